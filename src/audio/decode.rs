//! Decoding WAV (8/16/24/32-bit integer, 32/64-bit float, any channel count, extra chunks, padded
//! and streaming files)
//! and FLAC (symphonia), mixed down to mono f32 the way librosa does (mean of the channels,
//! integers scaled by 2^(bits-1)).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Sample rates a file may declare: telephone speech to high-resolution studio audio.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// The largest sample magnitude accepted: 60 dB over full scale.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1000.0;

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
    /// What could be checked of the samples against the file's own signature.
    pub integrity: Integrity,
}

impl Audio {
    /// Samples from elsewhere (an array handed in): nothing to check them against.
    pub fn new(samples: Vec<f32>, sample_rate: u32) -> Audio {
        Audio { samples, sample_rate, integrity: Integrity::NoSignature }
    }
}

/// Whether a decoded clip's samples were checked against a signature its file carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// The format carries none (WAV), or the samples came from memory.
    NoSignature,
    /// A FLAC stream whose decoded audio matched its MD5 signature.
    Verified,
    /// A FLAC stream written without an MD5 signature (all zero): a damaged frame that still
    /// parses would go unnoticed.
    Unverifiable,
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
    // Full scale is 1; float files may exceed it, but by 60 dB nothing is audio any more, and
    // powers of such values overflow f32 in the spectra (NaN features, a confident label).
    if let Some(i) = audio.samples.iter().position(|s| s.abs() > MAX_SAMPLE_MAGNITUDE) {
        bail!("sample {i} is {:e}, beyond any audio level (full scale is 1; at most {MAX_SAMPLE_MAGNITUDE} is accepted)", audio.samples[i]);
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

/// The sample encodings a WAV `fmt ` chunk can declare that `ser` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WavEncoding {
    /// Integer PCM: 8-bit unsigned, 16/24/32-bit signed little-endian.
    Int(u16),
    /// IEEE float, 32 or 64 bits.
    Float(u16),
}

/// A RIFF/WAVE file read by walking its chunks (as libsndfile does): any chunks before and
/// after `fmt ` and `data` are skipped, odd-sized chunks are followed by their pad byte, a data
/// chunk of size 0xFFFFFFFF or 0 (what streaming writers leave) runs to the end of the file,
/// one that claims more than the file holds is an error, and WAVE_FORMAT_EXTENSIBLE names its
/// encoding in the
/// sub-format. Every size is checked against the bytes present before anything is reserved.
fn decode_wav(bytes: &[u8]) -> Result<Audio> {
    if bytes.len() < 12 || &bytes[8..12] != b"WAVE" {
        bail!("invalid WAV: a RIFF file that is not WAVE");
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut format: Option<(WavEncoding, usize, u32)> = None;
    let mut data: Option<&[u8]> = None;
    let mut at = 12;
    while at + 8 <= bytes.len() && data.is_none() {
        let id = &bytes[at..at + 4];
        let declared = u32_at(bytes, at + 4) as usize;
        let body = at + 8;
        let end = body.saturating_add(declared);
        match id {
            b"fmt " => {
                if declared < 16 || end > bytes.len() {
                    bail!("invalid WAV: fmt chunk of {declared} bytes");
                }
                let f = &bytes[body..end];
                let (tag, channels, rate, bits) = (u16_at(f, 0), u16_at(f, 2) as usize, u32_at(f, 4), u16_at(f, 14));
                // WAVE_FORMAT_EXTENSIBLE: the first two bytes of the sub-format GUID are the tag.
                let tag = if tag == 0xFFFE && f.len() >= 26 { u16_at(f, 24) } else { tag };
                let encoding = match (tag, bits) {
                    (1, 8 | 16 | 24 | 32) => WavEncoding::Int(bits),
                    (3, 32 | 64) => WavEncoding::Float(bits),
                    (tag, bits) => bail!("unsupported WAV sample format: format tag {tag}, {bits} bits"),
                };
                if channels == 0 {
                    bail!("WAV header says 0 channels");
                }
                format = Some((encoding, channels, rate));
            }
            b"data" => {
                if format.is_none() {
                    bail!("invalid WAV: data before the fmt chunk");
                }
                // Streaming writers leave the size 0xFFFFFFFF (or 0) to mean "to the end"; any
                // other size past the end is a cut file.
                if declared == 0xFFFF_FFFF || declared == 0 {
                    data = Some(&bytes[body.min(bytes.len())..]);
                } else if end > bytes.len() {
                    bail!("truncated or corrupt WAV data: the data chunk declares {declared} bytes, {} are present", bytes.len().saturating_sub(body));
                } else {
                    data = Some(&bytes[body..end]);
                }
            }
            _ => {}
        }
        // Chunks are padded to even sizes; a writer that forgot the pad byte is tolerated when
        // the next chunk id only lines up without it.
        let padded = end.saturating_add(declared % 2);
        let looks_like_id = |i: usize| i + 4 <= bytes.len() && bytes[i..i + 4].iter().all(|c| c.is_ascii_graphic() || *c == b' ');
        at = if declared % 2 == 1 && !looks_like_id(padded) && looks_like_id(end) { end } else { padded };
    }
    let Some((encoding, channels, rate)) = format else { bail!("invalid WAV: no fmt chunk") };
    let Some(data) = data else { bail!("truncated or corrupt WAV data: no data chunk") };
    let width = match encoding {
        WavEncoding::Int(b) | WavEncoding::Float(b) => b as usize / 8,
    };
    let frames = data.len() / (width * channels);
    let whole = &data[..frames * width * channels];
    let samples = whole.chunks_exact(width).map(|c| match (encoding, width) {
        (WavEncoding::Int(_), 1) => (c[0] as f32 - 128.0) / 128.0,
        (WavEncoding::Int(_), 2) => i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0,
        (WavEncoding::Int(_), 3) => (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f32 / 8_388_608.0,
        (WavEncoding::Int(_), _) => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 / 2_147_483_648.0,
        (WavEncoding::Float(_), 4) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        (WavEncoding::Float(_), _) => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32,
    });
    Ok(Audio { samples: mixdown(samples, channels, frames), sample_rate: rate, integrity: Integrity::NoSignature })
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
        // verify: the decoder checks the decoded audio against the stream's MD5 signature.
        .make_audio_decoder(params, &{
            let mut o = AudioDecoderOptions::default();
            o.verify = true;
            o
        })
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
    // A damaged frame can decode to plausible samples; the stream's MD5 (written by encoders
    // unless told not to) tells.
    let integrity = match decoder.finalize().verify_ok {
        Some(false) => bail!("corrupt FLAC: the decoded audio does not match the stream's MD5 signature"),
        Some(true) => Integrity::Verified,
        None => Integrity::Unverifiable,
    };
    let frames = interleaved.len() / channels;
    Ok(Audio { samples: mixdown(interleaved.into_iter(), channels, frames), sample_rate: rate, integrity })
}

#[cfg(test)]
mod tests {
    use super::mixdown;

    #[test]
    fn mixdown_averages_each_frame_and_passes_mono_through() {
        assert_eq!(mixdown([0.5, -0.25, 1.0].into_iter(), 1, 3), [0.5, -0.25, 1.0]);
        assert_eq!(mixdown([1.0, 0.0, 0.5, 0.25, -1.0, -0.5].into_iter(), 2, 3), [0.5, 0.375, -0.75]);
        assert_eq!(mixdown([3.0, 0.0, 0.0, 0.0, 6.0, 3.0].into_iter(), 3, 2), [1.0, 3.0]);
    }
}
