//! Audio for the simulator: the G.711 μ-law codec and WAV file input/output.
//!
//! Twilio Media Streams carry raw 8 kHz mono μ-law (ITU-T G.711, 8 bytes per ms). The simulator reads a caller's WAV
//! file into that format and writes what the assistant sent back as an ordinary 8 kHz 16-bit PCM WAV.
//!
//! Accepted input (the RIFF chunks are parsed here; PCM and float samples are read with `hound`):
//! - μ-law (format tag 7, or `WAVE_FORMAT_EXTENSIBLE` with the μ-law sub-format), 8 kHz mono: passed through as is;
//! - integer PCM (8, 16, 24 or 32 bit) or 32-bit float, any sample rate, any channel count: channels are averaged,
//!   the rate is converted to 8 kHz by linear interpolation, then samples are μ-law encoded;
//! - μ-law at another rate or with several channels: decoded, then treated like PCM.
//!
//! Anything else (A-law, ADPCM, ...) is refused with an error naming the formats above.

use std::io::Cursor;
use std::path::Path;

use super::SimulateError;

/// The sample rate of Twilio Media Streams audio, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 8_000;

/// μ-law bytes per millisecond of 8 kHz mono audio.
pub const MULAW_BYTES_PER_MS: u64 = 8;

/// The μ-law byte for a zero sample: what a silent phone line carries.
pub const MULAW_SILENCE: u8 = 0xFF;

/// Added to the magnitude before finding the segment, as G.711 specifies (0x84 = 132).
const MULAW_BIAS: i32 = 0x84;

/// Largest magnitude the encoder represents; louder samples are clipped to it.
const MULAW_CLIP: i32 = 32_635;

/// RIFF format tag of integer PCM.
const FORMAT_PCM: u16 = 1;
/// RIFF format tag of IEEE float samples.
const FORMAT_IEEE_FLOAT: u16 = 3;
/// RIFF format tag of G.711 μ-law.
const FORMAT_MULAW: u16 = 7;
/// RIFF format tag whose real format sits in the first two bytes of the sub-format GUID.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Encodes one 16-bit linear PCM sample as G.711 μ-law.
///
/// Follows ITU-T G.711: sign bit, 3-bit segment, 4-bit mantissa, all bits inverted. `0` encodes to `0xFF`;
/// magnitudes above 32635 are clipped.
pub fn mulaw_encode(sample: i16) -> u8 {
    let sample = i32::from(sample);
    let sign: u8 = if sample < 0 { 0x80 } else { 0x00 };
    let magnitude = sample.abs().min(MULAW_CLIP) + MULAW_BIAS;
    // The segment is the position of the highest set bit above bit 7 (the bias guarantees bit 7 is reachable).
    let highest_bit = 31 - magnitude.leading_zeros() as i32;
    let segment = (highest_bit - 7).clamp(0, 7);
    let mantissa = (magnitude >> (segment + 3)) & 0x0F;
    let segment_bits =
        u8::try_from(segment << 4).expect("segment is at most 7, so segment << 4 fits in a byte");
    let mantissa_bits = u8::try_from(mantissa).expect("mantissa is masked to 4 bits");
    !(sign | segment_bits | mantissa_bits)
}

/// Decodes one G.711 μ-law byte to a 16-bit linear PCM sample.
///
/// `0xFF` and `0x7F` (positive and negative zero) both decode to `0`; the extremes are ±32124.
pub fn mulaw_decode(byte: u8) -> i16 {
    let bits = !byte;
    let segment = i32::from((bits >> 4) & 0x07);
    let mantissa = i32::from(bits & 0x0F);
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << segment) - MULAW_BIAS;
    let sample = if bits & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    i16::try_from(sample).expect("a decoded μ-law magnitude is at most 32124")
}

/// Encodes a run of 16-bit PCM samples as μ-law, one byte per sample.
pub fn encode_pcm(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&sample| mulaw_encode(sample)).collect()
}

/// Decodes a run of μ-law bytes to 16-bit PCM samples, one sample per byte.
pub fn decode_mulaw(mulaw: &[u8]) -> Vec<i16> {
    mulaw.iter().map(|&byte| mulaw_decode(byte)).collect()
}

/// Reads a WAV file and returns its audio as raw 8 kHz mono μ-law, ready to stream as Twilio `media` payloads.
///
/// See the module documentation for the accepted formats. 8 kHz mono μ-law is returned byte for byte.
///
/// # Errors
///
/// [`SimulateError::Io`] when the file cannot be read; [`SimulateError::Wav`] when it is not a RIFF/WAVE file, has
/// no `fmt ` or `data` chunk, or holds a format other than μ-law, integer PCM or 32-bit float.
pub fn read_wav_as_mulaw(path: &Path) -> Result<Vec<u8>, SimulateError> {
    let bytes = std::fs::read(path)?;
    let wav_error = |reason: String| SimulateError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let layout = parse_riff(&bytes).map_err(wav_error)?;
    match layout.format_tag {
        FORMAT_MULAW => {
            let data = &bytes[layout.data.clone()];
            if layout.sample_rate_hz == SAMPLE_RATE_HZ && layout.channels == 1 {
                return Ok(data.to_vec());
            }
            let mono = mix_to_mono(&decode_mulaw(data), layout.channels);
            Ok(encode_pcm(&resample_linear(
                &mono,
                layout.sample_rate_hz,
                SAMPLE_RATE_HZ,
            )))
        }
        FORMAT_PCM | FORMAT_IEEE_FLOAT => {
            let (samples, channels, sample_rate_hz) =
                read_pcm_with_hound(&bytes).map_err(wav_error)?;
            let mono = mix_to_mono(&samples, channels);
            Ok(encode_pcm(&resample_linear(
                &mono,
                sample_rate_hz,
                SAMPLE_RATE_HZ,
            )))
        }
        other => Err(wav_error(format!(
            "format tag {other} is not supported; expected μ-law (tag 7, ideally 8 kHz mono), \
             integer PCM (tag 1) or 32-bit float (tag 3)"
        ))),
    }
}

/// Writes raw 8 kHz mono μ-law as an 8 kHz mono 16-bit PCM WAV file (decoded with [`mulaw_decode`]).
///
/// # Errors
///
/// [`SimulateError::Wav`] when the file cannot be created or written.
pub fn write_mulaw_as_wav(path: &Path, mulaw: &[u8]) -> Result<(), SimulateError> {
    let wav_error = |error: hound::Error| SimulateError::Wav {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE_HZ,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_error)?;
    for &byte in mulaw {
        writer.write_sample(mulaw_decode(byte)).map_err(wav_error)?;
    }
    writer.finalize().map_err(wav_error)
}

/// What the RIFF chunks say about a WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RiffLayout {
    /// The effective format tag (the sub-format's tag for `WAVE_FORMAT_EXTENSIBLE`).
    format_tag: u16,
    /// Interleaved channel count.
    channels: u16,
    /// Frames per second.
    sample_rate_hz: u32,
    /// Byte range of the `data` chunk's payload within the file (clamped to the file's end).
    data: std::ops::Range<usize>,
}

/// Walks the RIFF chunks of a WAVE file to find its format and its `data` payload.
fn parse_riff(bytes: &[u8]) -> Result<RiffLayout, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".to_owned());
    }
    let mut format: Option<(u16, u16, u32)> = None;
    let mut data: Option<std::ops::Range<usize>> = None;
    let mut offset = 12usize;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let declared_size = usize::try_from(read_u32_le(bytes, offset + 4))
            .map_err(|_| "chunk size does not fit in memory".to_owned())?;
        let body_start = offset + 8;
        // Streaming writers leave the size at 0 or 0xFFFFFFFF; never read past the file.
        let body_end = body_start.saturating_add(declared_size).min(bytes.len());
        match id {
            b"fmt " => {
                if body_end - body_start < 16 {
                    return Err("the fmt chunk is shorter than 16 bytes".to_owned());
                }
                let mut tag = read_u16_le(bytes, body_start);
                let channels = read_u16_le(bytes, body_start + 2);
                let sample_rate_hz = read_u32_le(bytes, body_start + 4);
                if tag == FORMAT_EXTENSIBLE {
                    // cbSize(2) validBits(2) channelMask(4), then the GUID whose first two bytes are the tag.
                    if body_end - body_start < 26 {
                        return Err("the extensible fmt chunk is too short".to_owned());
                    }
                    tag = read_u16_le(bytes, body_start + 24);
                }
                if channels == 0 || sample_rate_hz == 0 {
                    return Err(
                        "the fmt chunk declares no channels or a zero sample rate".to_owned()
                    );
                }
                format = Some((tag, channels, sample_rate_hz));
            }
            b"data" => data = Some(body_start..body_end),
            _ => {}
        }
        if data.is_some() && format.is_some() {
            break;
        }
        // Chunks are padded to an even size.
        offset = body_start
            .saturating_add(declared_size)
            .saturating_add(declared_size % 2);
    }
    let (format_tag, channels, sample_rate_hz) = format.ok_or_else(|| "no fmt chunk".to_owned())?;
    let data = data.ok_or_else(|| "no data chunk".to_owned())?;
    Ok(RiffLayout {
        format_tag,
        channels,
        sample_rate_hz,
        data,
    })
}

fn read_u16_le(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32_le(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads PCM or float samples with hound, scaled to 16 bits; returns (interleaved samples, channels, rate).
fn read_pcm_with_hound(bytes: &[u8]) -> Result<(Vec<i16>, u16, u32), String> {
    let mut reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|error| error.to_string())?;
    let spec = reader.spec();
    let samples: Result<Vec<i16>, hound::Error> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|sample| sample.map(float_to_i16))
            .collect(),
        (hound::SampleFormat::Int, 16) => reader.samples::<i16>().collect(),
        (hound::SampleFormat::Int, bits @ (8 | 24 | 32)) => {
            let shift = i32::from(bits) - 16;
            reader
                .samples::<i32>()
                .map(|sample| sample.map(|value| scale_to_i16(value, shift)))
                .collect()
        }
        (format, bits) => {
            return Err(format!(
                "{bits}-bit {format:?} samples are not supported; expected 16-bit PCM (8, 24, 32-bit PCM and \
                 32-bit float are converted)"
            ));
        }
    };
    Ok((
        samples.map_err(|error| error.to_string())?,
        spec.channels,
        spec.sample_rate,
    ))
}

/// Converts a float sample in [-1, 1] to 16 bits, clamping anything outside.
fn float_to_i16(value: f32) -> i16 {
    let scaled = (value.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round();
    // The clamp above keeps `scaled` within i16's range, and NaN casts to 0.
    scaled as i16
}

/// Shifts an integer sample of another bit depth to 16 bits (`shift` = bits - 16; negative widens 8-bit samples).
fn scale_to_i16(value: i32, shift: i32) -> i16 {
    let scaled = if shift >= 0 {
        value >> shift
    } else {
        value << -shift
    };
    i16::try_from(scaled.clamp(i32::from(i16::MIN), i32::from(i16::MAX)))
        .expect("clamped to the i16 range")
}

/// Averages interleaved channels into one.
fn mix_to_mono(samples: &[i16], channels: u16) -> Vec<i16> {
    if channels <= 1 {
        return samples.to_vec();
    }
    samples
        .chunks(usize::from(channels))
        .map(|frame| {
            let sum: i32 = frame.iter().map(|&sample| i32::from(sample)).sum();
            let count = i32::try_from(frame.len()).expect("a frame has at most u16::MAX samples");
            i16::try_from(sum / count).expect("the mean of i16 values is an i16")
        })
        .collect()
}

/// Converts mono samples from `from_hz` to `to_hz` by linear interpolation (no filtering: good enough for speech
/// going to an 8 kHz phone line, not for music).
fn resample_linear(samples: &[i16], from_hz: u32, to_hz: u32) -> Vec<i16> {
    if from_hz == to_hz || samples.is_empty() {
        return samples.to_vec();
    }
    let output_len = usize::try_from(samples.len() as u64 * u64::from(to_hz) / u64::from(from_hz))
        .expect("the output is no longer than the input times a u32 ratio");
    let step = f64::from(from_hz) / f64::from(to_hz);
    let last = samples.len() - 1;
    (0..output_len)
        .map(|index| {
            let position = index as f64 * step;
            // `position` is non-negative and below samples.len(), so truncation gives a valid index.
            let left = (position.floor() as usize).min(last);
            let right = (left + 1).min(last);
            let fraction = position - left as f64;
            let value =
                f64::from(samples[left]) * (1.0 - fraction) + f64::from(samples[right]) * fraction;
            value.round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_encodes_to_the_silence_byte() {
        assert_eq!(mulaw_encode(0), MULAW_SILENCE);
    }

    #[test]
    fn the_silence_byte_and_negative_zero_decode_to_zero() {
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x7F), 0);
    }

    #[test]
    fn the_extremes_encode_to_the_loudest_codes_and_decode_to_32124() {
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(mulaw_decode(0x80), 32_124);
        assert_eq!(mulaw_decode(0x00), -32_124);
    }

    #[test]
    fn known_g711_values_match() {
        // Segment boundaries from the G.711 table: 1 → 0xFE-ish region, 1000 → 0xCE, -1000 → 0x4E.
        assert_eq!(mulaw_encode(1000), 0xCE);
        assert_eq!(mulaw_encode(-1000), 0x4E);
        assert_eq!(mulaw_decode(0xCE), 988);
        assert_eq!(mulaw_decode(0x4E), -988);
    }

    proptest! {
        #[test]
        fn every_code_except_negative_zero_survives_decode_then_encode(byte in any::<u8>()) {
            prop_assume!(byte != 0x7F);
            prop_assert_eq!(mulaw_encode(mulaw_decode(byte)), byte);
        }

        #[test]
        fn encode_then_decode_stays_within_the_quantisation_step(sample in any::<i16>()) {
            let decoded = i32::from(mulaw_decode(mulaw_encode(sample)));
            let original = i32::from(sample);
            let error = (decoded - original).abs();
            // Each segment doubles the step; the error is at most about 1/16 of the magnitude (plus the clip at
            // 32635 and the smallest step near zero).
            prop_assert!(error <= (original.abs() / 16).max(16), "{sample} → {decoded}, error {error}");
            prop_assert!(decoded == 0 || decoded.signum() == original.signum());
        }
    }

    fn temp_wav_path(name: &str) -> std::path::PathBuf {
        let directory =
            std::env::temp_dir().join(format!("callbridge-simulate-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("the temp dir is writable");
        directory.join(name)
    }

    fn write_pcm_wav(path: &Path, channels: u16, sample_rate_hz: u32, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: sample_rate_hz,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer =
            hound::WavWriter::create(path, spec).expect("the temp file can be created");
        for &sample in samples {
            writer
                .write_sample(sample)
                .expect("the temp file can be written");
        }
        writer.finalize().expect("the temp file can be finalized");
    }

    /// Builds a minimal μ-law WAV (format tag 7) by hand, as telephony tools write it.
    fn mulaw_wav_bytes(channels: u16, sample_rate_hz: u32, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&FORMAT_MULAW.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&sample_rate_hz.to_le_bytes());
        fmt.extend_from_slice(&(sample_rate_hz * u32::from(channels)).to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&0u16.to_le_bytes());
        let mut body = b"WAVE".to_vec();
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        body.extend_from_slice(&fmt);
        body.extend_from_slice(b"fact");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn an_8_khz_pcm_wav_reads_back_as_its_mulaw_encoding() {
        // Arrange
        let path = temp_wav_path("pcm-8k.wav");
        let samples: Vec<i16> = (0..800)
            .map(|i| ((i * 97) % 20_000 - 10_000) as i16)
            .collect();
        write_pcm_wav(&path, 1, 8_000, &samples);

        // Act
        let mulaw = read_wav_as_mulaw(&path).expect("a 16-bit 8 kHz mono WAV is accepted");

        // Assert
        assert_eq!(mulaw, encode_pcm(&samples));
    }

    #[test]
    fn written_assistant_audio_reads_back_byte_for_byte() {
        // Arrange: decode(encode(decode(b))) == decode(b), so only negative zero (0x7F) may turn into 0xFF.
        let path = temp_wav_path("roundtrip.wav");
        let mulaw: Vec<u8> = (0..=255u8)
            .filter(|&byte| byte != 0x7F)
            .cycle()
            .take(4_000)
            .collect();

        // Act
        write_mulaw_as_wav(&path, &mulaw).expect("the temp dir is writable");
        let read_back = read_wav_as_mulaw(&path).expect("our own WAV is readable");

        // Assert
        assert_eq!(read_back, mulaw);
        let spec = hound::WavReader::open(&path)
            .expect("hound reads it")
            .spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8_000, 16)
        );
    }

    #[test]
    fn a_mulaw_wav_is_passed_through_unchanged() {
        // Arrange
        let path = temp_wav_path("mulaw-8k.wav");
        let data: Vec<u8> = (0..161u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(&path, mulaw_wav_bytes(1, 8_000, &data)).expect("the temp dir is writable");

        // Act
        let mulaw = read_wav_as_mulaw(&path).expect("an 8 kHz mono μ-law WAV is accepted");

        // Assert
        assert_eq!(mulaw, data);
    }

    #[test]
    fn a_16_khz_stereo_wav_is_mixed_down_and_halved_in_length() {
        // Arrange: left and right differ; their mean is constant.
        let path = temp_wav_path("pcm-16k-stereo.wav");
        let frames = 1_600;
        let samples: Vec<i16> = (0..frames).flat_map(|_| [3_000i16, 1_000i16]).collect();
        write_pcm_wav(&path, 2, 16_000, &samples);

        // Act
        let mulaw = read_wav_as_mulaw(&path).expect("other rates are resampled");

        // Assert
        assert_eq!(mulaw.len(), 800);
        assert!(mulaw.iter().all(|&byte| byte == mulaw_encode(2_000)));
    }

    #[test]
    fn a_file_that_is_not_a_wav_is_refused_with_a_reason() {
        // Arrange
        let path = temp_wav_path("not-a-wav.wav");
        std::fs::write(&path, b"hello, this is text").expect("the temp dir is writable");

        // Act
        let error = read_wav_as_mulaw(&path).expect_err("text is not a WAV");

        // Assert
        assert!(
            matches!(&error, SimulateError::Wav { reason, .. } if reason.contains("RIFF")),
            "{error}"
        );
    }

    #[test]
    fn an_a_law_wav_is_refused_with_the_expected_formats_named() {
        // Arrange: same layout as μ-law, tag 6.
        let path = temp_wav_path("alaw.wav");
        let mut bytes = mulaw_wav_bytes(1, 8_000, &[0xD5; 16]);
        bytes[20..22].copy_from_slice(&6u16.to_le_bytes());
        std::fs::write(&path, bytes).expect("the temp dir is writable");

        // Act
        let error = read_wav_as_mulaw(&path).expect_err("A-law is not supported");

        // Assert
        assert!(error.to_string().contains("expected μ-law"), "{error}");
    }

    #[test]
    fn linear_resampling_keeps_a_ramp_a_ramp() {
        let ramp: Vec<i16> = (0..100).map(|i| i * 10).collect();

        let halved = resample_linear(&ramp, 16_000, 8_000);
        let doubled = resample_linear(&ramp, 4_000, 8_000);

        assert_eq!(halved, (0..50).map(|i| i * 20).collect::<Vec<i16>>());
        assert_eq!(doubled.len(), 200);
        assert_eq!(&doubled[..5], &[0, 5, 10, 15, 20]);
    }
}
