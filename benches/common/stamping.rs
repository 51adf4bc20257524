//! An audio output that tells the bench when each sound's first sample is taken.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use paysay::audio::{AudioError, AudioOutput, Sound};
use rodio::Source;

/// Wraps an output; each sound written sends the time its first sample was taken.
pub struct Stamping {
    pub inner: Box<dyn AudioOutput>,
    pub stamps: mpsc::Sender<Instant>,
}

impl AudioOutput for Stamping {
    fn start(&mut self) -> Result<(), AudioError> {
        self.inner.start()
    }

    fn stop(&mut self) {
        self.inner.stop()
    }

    fn write(&mut self, sound: Sound) -> Result<(), AudioError> {
        self.inner.write(Box::new(Stamped {
            sound,
            stamps: Some(self.stamps.clone()),
        }))
    }
}

/// A sound that sends the time its first sample was taken.
struct Stamped {
    sound: Sound,
    stamps: Option<mpsc::Sender<Instant>>,
}

impl Iterator for Stamped {
    type Item = rodio::Sample;

    fn next(&mut self) -> Option<rodio::Sample> {
        let sample = self.sound.next();
        if let Some(stamps) = self.stamps.take() {
            let _ = stamps.send(Instant::now());
        }
        sample
    }
}

impl Source for Stamped {
    fn current_span_len(&self) -> Option<usize> {
        self.sound.current_span_len()
    }
    fn channels(&self) -> rodio::ChannelCount {
        self.sound.channels()
    }
    fn sample_rate(&self) -> rodio::SampleRate {
        self.sound.sample_rate()
    }
    fn total_duration(&self) -> Option<Duration> {
        self.sound.total_duration()
    }
}
