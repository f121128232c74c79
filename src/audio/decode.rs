//! Decoding WAV (hound: 8/16/24/32-bit integer, 32-bit float, any channel count, extra chunks)
//! and FLAC (symphonia), mixed down to mono f32 the way librosa does (mean of the channels,
//! integers scaled by 2^(bits-1)).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// A decoded clip: mono samples and their rate.
#[derive(Clone, Debug)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Decodes a file by its contents (RIFF/WAVE or fLaC magic), whatever its extension.
pub fn decode_file(path: &Path) -> Result<Audio> {
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
    if audio.sample_rate == 0 {
        bail!("sample rate is 0");
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

fn decode_wav(bytes: &[u8]) -> Result<Audio> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).context("invalid WAV")?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        bail!("WAV header says 0 channels");
    }
    let frames = reader.duration() as usize;
    let samples = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            let v: Vec<f32> = reader.samples::<f32>().collect::<Result<_, _>>().context("truncated or corrupt WAV data")?;
            mixdown(v.into_iter(), channels, frames)
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // hound returns 8-bit (unsigned on disk) already centred on zero.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let v: Vec<i32> = reader.samples::<i32>().collect::<Result<_, _>>().context("truncated or corrupt WAV data")?;
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
        interleaved.extend_from_slice(&chunk);
    }
    if channels == 0 {
        bail!("FLAC stream holds no audio frames");
    }
    let frames = interleaved.len() / channels;
    Ok(Audio { samples: mixdown(interleaved.into_iter(), channels, frames), sample_rate: rate })
}
