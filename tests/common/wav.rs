//! Sounds for test voices, as WAV bytes.

/// `samples` as a mono 16-bit WAV at `sample_rate`.
pub fn wav(sample_rate: u32, samples: impl IntoIterator<Item = i16>) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
    for sample in samples {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
    bytes.into_inner()
}

/// `samples` of a loud 400 Hz square wave at `sample_rate`: a sound an output cannot take
/// for silence.
pub fn beep(sample_rate: u32, samples: u32) -> Vec<u8> {
    let period = sample_rate / 400;
    wav(
        sample_rate,
        (0..samples).map(|i| if i % period < period / 2 { 8000 } else { -8000 }),
    )
}
