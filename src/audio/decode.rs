//! Decoding WAV (hound: 8/16/24/32-bit integer, 32-bit float, any channel count, extra chunks)
//! and FLAC (symphonia), mixed down to mono f32 the way librosa does (mean of the channels,
//! integers scaled by 2^(bits-1)).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Sample rates a file may declare: telephone speech to high-resolution studio audio.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// The largest audio file read: 2 GiB (3 hours of 48 kHz 16-bit stereo WAV).
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// The most samples (all channels) decoded from one file: a FLAC of silence compresses almost
/// to nothing, so its size does not bound its length. 2^29 is 93 minutes of 48 kHz stereo.
pub const MAX_DECODED_SAMPLES: usize = 1 << 29;

/// A decoded clip: mono samples and their rate.
#[derive(Clone, Debug)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Decodes a file by its contents (RIFF/WAVE or fLaC magic), whatever its extension.
pub fn decode_file(path: &Path) -> Result<Audio> {
    // Opening a FIFO would block forever and a device could stream without end: only regular
    // files (links followed) of a bounded size are read.
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file (a FIFO, socket, device or folder)", path.display());
    }
    if meta.len() > MAX_FILE_BYTES {
        bail!("{}: {} bytes, over the {MAX_FILE_BYTES} a clip may have (cut long recordings into parts)", path.display(), meta.len());
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

pub fn decode_bytes(bytes: &[u8]) -> Result<Audio> {
    if bytes.is_empty() {
        bail!("empty file");
    }
    let audio = if bytes.starts_with(b"RIFF") {
        decode_wav(bytes)?
    } else if bytes.starts_with(b"fLaC") {
        decode_flac(bytes)?
    } else {
        bail!("not a WAV (RIFF) or FLAC file (starts with {:02x?})", &bytes[..bytes.len().min(4)]);
    };
    if audio.samples.is_empty() {
        bail!("no audio samples");
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&audio.sample_rate) {
        // Resampling a 1 Hz header to 16 kHz would multiply the samples by 16,000.
        bail!("sample rate {} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz", audio.sample_rate);
    }
    if let Some(i) = audio.samples.iter().position(|s| !s.is_finite()) {
        bail!("sample {i} is {} (not a finite number)", audio.samples[i]);
    }
    Ok(audio)
}

fn mixdown(interleaved: impl Iterator<Item = f32>, channels: usize, frames_hint: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames_hint);
    if channels == 1 {
        out.extend(interleaved);
        return out;
    }
    let mut acc = 0.0f32;
    let mut n = 0;
    for s in interleaved {
        acc += s;
        n += 1;
        if n == channels {
            out.push(acc / channels as f32);
            acc = 0.0;
            n = 0;
        }
    }
    out
}

/// Collects samples with at most `most` reserved up front (`collect` would trust the header).
fn read_bounded<T>(samples: impl Iterator<Item = hound::Result<T>>, most: usize) -> Result<Vec<T>> {
    let mut v = Vec::with_capacity(most.min(1 << 24));
    for s in samples {
        v.push(s.context("truncated or corrupt WAV data")?);
    }
    Ok(v)
}

fn decode_wav(bytes: &[u8]) -> Result<Audio> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).context("invalid WAV")?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        bail!("WAV header says 0 channels");
    }
    // The header's length is a claim: memory is reserved for what the file can hold.
    let bytes_per_sample = (spec.bits_per_sample as usize).div_ceil(8).max(1);
    let most = bytes.len() / bytes_per_sample;
    let frames = (reader.duration() as usize).min(most / channels);
    let samples = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            let v = read_bounded(reader.samples::<f32>(), most)?;
            mixdown(v.into_iter(), channels, frames)
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // hound returns 8-bit (unsigned on disk) already centred on zero.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let v = read_bounded(reader.samples::<i32>(), most)?;
            mixdown(v.into_iter().map(|s| s as f32 * scale), channels, frames)
        }
        (fmt, bits) => bail!("unsupported WAV sample format: {bits}-bit {fmt:?}"),
    };
    Ok(Audio { samples, sample_rate: spec.sample_rate })
}

fn decode_flac(bytes: &[u8]) -> Result<Audio> {
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;

    let source = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("flac");
    let mut format = symphonia::default::get_probe()
        .probe(&hint, source, FormatOptions::default(), MetadataOptions::default())
        .context("invalid FLAC")?;
    let track = format.default_track(TrackType::Audio).context("FLAC file has no audio track")?;
    let params = track.codec_params.as_ref().and_then(|p| p.audio()).context("FLAC track has no audio parameters")?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .context("no FLAC decoder")?;
    let track_id = track.id;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut chunk: Vec<f32> = Vec::new();
    let mut channels = 0usize;
    let mut rate = 0u32;
    while let Some(packet) = format.next_packet().context("corrupt FLAC stream")? {
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).context("corrupt FLAC frame")?;
        channels = buf.spec().channels().count();
        rate = buf.spec().rate();
        chunk.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut chunk);
        if interleaved.len() + chunk.len() > MAX_DECODED_SAMPLES {
            bail!("FLAC stream decodes to more than {MAX_DECODED_SAMPLES} samples (cut long recordings into parts)");
        }
        interleaved.extend_from_slice(&chunk);
    }
    if channels == 0 {
        bail!("FLAC stream holds no audio frames");
    }
    let frames = interleaved.len() / channels;
    Ok(Audio { samples: mixdown(interleaved.into_iter(), channels, frames), sample_rate: rate })
}
