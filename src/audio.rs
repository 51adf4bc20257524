//! Audio: one thread owns the speaker and plays announcements one after another.
//!
//! The rodio device sink is not `Send`, and waiting for a clip to end blocks, so both live
//! on a dedicated thread fed by a channel ([`AudioCommand`]), as librespot's player does;
//! async code holds a [`PlayerHandle`] whose `play` resolves once the clip has been heard,
//! which is when the daemon may mark a payment announced.
//!
//! The output is opened when there is something to say and closed after `idle_close_ms` of
//! silence: an open output holds the device and, on ALSA's unpaced null/file devices used in
//! tests, burns a core writing silence (librespot's sinks start/stop for the same reason).

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rodio::Source;
use tokio::sync::oneshot;

use crate::config::AudioConfig;
use crate::speech::{Clip, ClipAudio};

/// The built-in chime: two soft sine tones (C6 then E6, 0.73 s), embedded so it plays from
/// any working directory.
pub const BUILTIN_CHIME: &[u8] = include_bytes!("../assets/chime.wav");

/// Silence after each announcement, so the end of the words has left the device's buffer
/// before the output may be closed.
const TAIL: Duration = Duration::from_millis(150);

/// A sound ready for an output: decoded, volume applied.
pub type Sound = Box<dyn Source + Send>;

/// Why something could not be played. The caller keeps the payment unannounced and retries.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(
        "no audio output device could be opened: {0} (is the speaker plugged in and the sound system running? paysay will try again)"
    )]
    NoDevice(String),
    #[error("cannot read the clip {path}: {source}")]
    ReadClip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot decode the audio {path}: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("the chime {path} cannot be used: {reason} (fix or remove audio.chime_path)")]
    Chime { path: PathBuf, reason: String },
    #[error("the audio output failed: {0}")]
    Output(String),
    #[error("cannot start the audio thread: {0}")]
    Thread(std::io::Error),
    #[error("the audio thread has stopped")]
    Stopped,
    #[error("paysay is shutting down; the clip was not played")]
    ShuttingDown,
}

/// Where sound goes: librespot's `Sink` seam. `start` opens the device, `write` plays a sound
/// to its end (blocking the audio thread), `stop` closes the device.
pub trait AudioOutput {
    /// Opens the device; called before the first sound after an idle spell.
    fn start(&mut self) -> Result<(), AudioError>;
    /// Closes the device; called after `idle_close_ms` of silence and at shutdown.
    fn stop(&mut self);
    /// Plays `sound` and returns once its last sample has been handed to the device.
    fn write(&mut self, sound: Sound) -> Result<(), AudioError>;
}

/// A constructor in the output table.
type MakeOutput = fn() -> Box<dyn AudioOutput>;

/// Every output by name; the first is the default.
pub const OUTPUTS: &[(&str, MakeOutput)] = &[
    ("rodio", || Box::new(RodioOutput::default())),
    ("null", || Box::new(NullOutput::default())),
];

/// The system's default sound device, through rodio and cpal.
#[derive(Default)]
pub struct RodioOutput {
    open: Option<(rodio::MixerDeviceSink, rodio::Player)>,
}

impl AudioOutput for RodioOutput {
    fn start(&mut self) -> Result<(), AudioError> {
        let alsa_lines = AlsaLines::capture();
        let mut sink = rodio::DeviceSinkBuilder::open_default_sink().map_err(|e| {
            alsa_lines.log();
            AudioError::NoDevice(crate::error_chain(&e))
        })?;
        // Closing is routine here (after every idle spell), not worth a message each time.
        sink.log_on_drop(false);
        let player = rodio::Player::connect_new(sink.mixer());
        tracing::debug!("audio output opened: {:?}", sink.config());
        self.open = Some((sink, player));
        Ok(())
    }

    fn stop(&mut self) {
        if self.open.take().is_some() {
            tracing::debug!("audio output closed");
        }
    }

    fn write(&mut self, sound: Sound) -> Result<(), AudioError> {
        if self.open.is_none() {
            self.start()?;
        }
        if let Some((_, player)) = &self.open {
            player.append(sound);
            player.sleep_until_end();
        }
        Ok(())
    }
}

/// What alsa-lib says while the device opens, kept from stderr.
///
/// alsa-lib prints its own diagnosis of a failed open straight to stderr (eight
/// `ALSA lib confmisc.c…` lines when there is no sound card), before paysay's error says the
/// same in words a shop owner can act on. alsa-lib's per-thread handler sends those lines
/// into a buffer instead, which goes to the debug log when the open fails. Each capture
/// starts an empty buffer, so a daemon that retries for months without a speaker does not
/// pile them up. The handler is per thread: the device is opened here, on the thread that
/// calls [`AudioOutput::start`], and not on cpal's stream thread.
struct AlsaLines {
    #[cfg(target_os = "linux")]
    buffer: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl AlsaLines {
    /// From now on, alsa-lib's lines on this thread go into a fresh buffer.
    fn capture() -> AlsaLines {
        AlsaLines {
            // Without a buffer (out of memory), alsa-lib keeps printing: no worse than before.
            #[cfg(target_os = "linux")]
            buffer: alsa::Output::local_error_handler().ok(),
        }
    }

    /// Logs what alsa-lib said since [`AlsaLines::capture`], at debug level.
    fn log(&self) {
        #[cfg(target_os = "linux")]
        if let Some(buffer) = &self.buffer {
            let said = buffer.borrow().to_string();
            let lines: Vec<&str> = said
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if !lines.is_empty() {
                tracing::debug!("alsa-lib: {}", lines.join("; "));
            }
        }
    }
}

/// An output that plays nothing and counts what it was given: for tests and `--dry-run`.
#[derive(Debug, Default, Clone)]
pub struct NullOutput {
    stats: NullStats,
}

/// What a [`NullOutput`] saw; clones share the counters.
#[derive(Debug, Default, Clone)]
pub struct NullStats(Arc<NullCounters>);

#[derive(Debug, Default)]
struct NullCounters {
    starts: AtomicU64,
    stops: AtomicU64,
    sounds: AtomicU64,
    samples: AtomicU64,
    micros: AtomicU64,
}

impl NullOutput {
    /// The counters this output updates.
    pub fn stats(&self) -> NullStats {
        self.stats.clone()
    }
}

impl NullStats {
    /// How often the output was opened.
    pub fn starts(&self) -> u64 {
        self.0.starts.load(Ordering::SeqCst)
    }
    /// How often the output was closed.
    pub fn stops(&self) -> u64 {
        self.0.stops.load(Ordering::SeqCst)
    }
    /// Sounds written (one per announcement).
    pub fn sounds(&self) -> u64 {
        self.0.sounds.load(Ordering::SeqCst)
    }
    /// Samples written, all channels.
    pub fn samples(&self) -> u64 {
        self.0.samples.load(Ordering::SeqCst)
    }
    /// Playing time of everything written.
    pub fn played(&self) -> Duration {
        Duration::from_micros(self.0.micros.load(Ordering::SeqCst))
    }
}

impl AudioOutput for NullOutput {
    fn start(&mut self) -> Result<(), AudioError> {
        self.stats.0.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&mut self) {
        self.stats.0.stops.fetch_add(1, Ordering::SeqCst);
    }

    fn write(&mut self, mut sound: Sound) -> Result<(), AudioError> {
        let (mut samples, mut seconds) = (0u64, 0f64);
        // Rate and channels may change between the chime and the words, so each sample
        // counts at the format in force when it was produced.
        loop {
            let per_second =
                f64::from(sound.sample_rate().get()) * f64::from(sound.channels().get());
            if sound.next().is_none() {
                break;
            }
            samples += 1;
            seconds += 1.0 / per_second;
        }
        let c = &self.stats.0;
        c.sounds.fetch_add(1, Ordering::SeqCst);
        c.samples.fetch_add(samples, Ordering::SeqCst);
        c.micros.fetch_add((seconds * 1e6) as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// A command for the audio thread.
enum AudioCommand {
    /// Play the clip (after the chime), then report on the channel.
    Play(Clip, oneshot::Sender<Result<(), AudioError>>),
    /// Close the output and end the thread; reported when done.
    Shutdown(oneshot::Sender<()>),
}

/// State shared between the handle and the audio thread.
#[derive(Debug)]
struct Shared {
    /// Volume as f32 bits: settable at run time (SIGHUP reload) without a command round trip.
    volume: AtomicU32,
    shutting_down: AtomicBool,
    output_open: AtomicBool,
}

/// Starts the audio thread.
pub struct Player;

impl Player {
    /// The audio thread with the default output (the system's sound device).
    pub fn spawn(config: &AudioConfig) -> Result<PlayerHandle, AudioError> {
        Player::spawn_with(config, OUTPUTS[0].1)
    }

    /// The audio thread with an output made on that thread by `make_output` (outputs need not
    /// be `Send`: rodio's is not).
    pub fn spawn_with<F>(config: &AudioConfig, make_output: F) -> Result<PlayerHandle, AudioError>
    where
        F: FnOnce() -> Box<dyn AudioOutput> + Send + 'static,
    {
        let chime = load_chime(config)?;
        let shared = Arc::new(Shared {
            volume: AtomicU32::new(clamp_volume(config.volume).to_bits()),
            shutting_down: AtomicBool::new(false),
            output_open: AtomicBool::new(false),
        });
        let (commands, inbox) = mpsc::channel();
        let thread = AudioThread {
            inbox,
            shared: shared.clone(),
            chime,
            idle_close: Duration::from_millis(config.idle_close_ms),
        };
        std::thread::Builder::new()
            .name("paysay-audio".into())
            .spawn(move || thread.run(make_output()))
            .map_err(AudioError::Thread)?;
        Ok(PlayerHandle { commands, shared })
    }
}

/// The async side of the audio thread. Clones talk to the same thread.
#[derive(Debug, Clone)]
pub struct PlayerHandle {
    commands: mpsc::Sender<AudioCommand>,
    shared: Arc<Shared>,
}

impl PlayerHandle {
    /// Queues `clip` behind those already queued; the future resolves when it has been
    /// played to the end (or could not be). Clips never overlap and play in call order.
    pub fn play(
        &self,
        clip: Clip,
    ) -> impl Future<Output = Result<(), AudioError>> + Send + 'static {
        let (reply, done) = oneshot::channel();
        let sent = self.commands.send(AudioCommand::Play(clip, reply));
        async move {
            sent.map_err(|_| AudioError::Stopped)?;
            done.await.map_err(|_| AudioError::Stopped)?
        }
    }

    /// Sets the volume for the next clips, 0.0 (silent) to 2.0.
    pub fn set_volume(&self, volume: f32) {
        self.shared
            .volume
            .store(clamp_volume(volume).to_bits(), Ordering::SeqCst);
    }

    /// The volume in use.
    pub fn volume(&self) -> f32 {
        f32::from_bits(self.shared.volume.load(Ordering::SeqCst))
    }

    /// Whether the output device is open right now.
    pub fn is_output_open(&self) -> bool {
        self.shared.output_open.load(Ordering::SeqCst)
    }

    /// Finishes the clip being spoken, refuses the ones still queued (their futures get
    /// [`AudioError::ShuttingDown`], so their payments stay unannounced for the next run),
    /// closes the output and ends the thread. Resolves when the thread is done.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let (ack, done) = oneshot::channel();
        if self.commands.send(AudioCommand::Shutdown(ack)).is_ok() {
            // An error means the thread has already ended: nothing left to wait for.
            let _ = done.await;
        }
    }
}

struct AudioThread {
    inbox: mpsc::Receiver<AudioCommand>,
    shared: Arc<Shared>,
    chime: Option<Arc<[u8]>>,
    idle_close: Duration,
}

impl AudioThread {
    fn run(self, mut output: Box<dyn AudioOutput>) {
        let mut open = false;
        let ack = loop {
            let command = if open {
                match self.inbox.recv_timeout(self.idle_close) {
                    Ok(command) => command,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.close(output.as_mut(), &mut open);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                }
            } else {
                match self.inbox.recv() {
                    Ok(command) => command,
                    Err(mpsc::RecvError) => break None,
                }
            };
            match command {
                AudioCommand::Play(clip, reply) => {
                    let result = self.play(output.as_mut(), &mut open, &clip);
                    if let Err(e) = &result {
                        tracing::warn!("could not play {:?}: {e}", clip.text);
                    }
                    // The caller may have stopped waiting; the clip was still played.
                    let _ = reply.send(result);
                }
                AudioCommand::Shutdown(ack) => break Some(ack),
            }
        };
        self.close(output.as_mut(), &mut open);
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        tracing::debug!("audio thread ended");
    }

    fn play(
        &self,
        output: &mut dyn AudioOutput,
        open: &mut bool,
        clip: &Clip,
    ) -> Result<(), AudioError> {
        if self.shared.shutting_down.load(Ordering::SeqCst) {
            return Err(AudioError::ShuttingDown);
        }
        // Decode before opening the device, so a bad file does not hold the speaker open.
        let sound = self.announcement(clip)?;
        if !*open {
            guarded(|| output.start())?;
            *open = true;
            self.shared.output_open.store(true, Ordering::SeqCst);
        }
        let result = guarded(|| output.write(sound));
        if result.is_err() {
            // The device may be gone; the next clip opens it afresh.
            self.close(output, open);
        }
        result
    }

    fn close(&self, output: &mut dyn AudioOutput, open: &mut bool) {
        if *open {
            output.stop();
            *open = false;
            self.shared.output_open.store(false, Ordering::SeqCst);
        }
    }

    /// Chime, words and a short silence as one sound, so nothing can slip between them.
    fn announcement(&self, clip: &Clip) -> Result<Sound, AudioError> {
        let volume = f32::from_bits(self.shared.volume.load(Ordering::SeqCst));
        let words = words(clip)?;
        let (parts, sound) = rodio::queue::queue(false);
        if let Some(chime) = &self.chime {
            parts.append(decode(chime.clone(), "chime")?.amplify(volume));
        }
        let (channels, rate) = (words.channels(), words.sample_rate());
        parts.append(words.amplify(volume));
        let tail = (rate.get() as f64 * TAIL.as_secs_f64()) as usize * usize::from(channels.get());
        parts.append(rodio::source::Zero::new_samples(channels, rate, tail));
        Ok(Box::new(sound))
    }
}

/// The words of `clip`, decoded: a whole phrase from its file, or composed samples. The
/// volume is applied to both alike by the caller.
fn words(clip: &Clip) -> Result<Sound, AudioError> {
    match &clip.audio {
        ClipAudio::File(path) => {
            // The file is read whole and closed here: no descriptor stays open while playing.
            let bytes = std::fs::read(path).map_err(|source| AudioError::ReadClip {
                path: path.clone(),
                source,
            })?;
            Ok(Box::new(decode(bytes, path)?))
        }
        ClipAudio::Composed(pcm) => {
            const MONO: std::num::NonZeroU16 = std::num::NonZeroU16::new(1).unwrap();
            let rate = std::num::NonZeroU32::new(pcm.rate).ok_or_else(|| AudioError::Decode {
                path: "composed".into(),
                reason: "a sample rate of 0".into(),
            })?;
            let samples: Vec<f32> = pcm
                .samples
                .iter()
                .map(|s| f32::from(*s) / 32768.0)
                .collect();
            Ok(Box::new(rodio::buffer::SamplesBuffer::new(
                MONO, rate, samples,
            )))
        }
    }
}

/// Runs an output call, turning a panic inside the audio stack into an error: the thread
/// must outlive a bad driver moment, or every later announcement would be lost.
fn guarded(call: impl FnOnce() -> Result<(), AudioError>) -> Result<(), AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic in the audio output".into());
        Err(AudioError::Output(reason))
    })
}

fn decode<T>(bytes: T, name: impl Into<PathBuf>) -> Result<rodio::Decoder<Cursor<T>>, AudioError>
where
    T: AsRef<[u8]> + Send + Sync + 'static,
{
    rodio::Decoder::try_from(Cursor::new(bytes)).map_err(|e| AudioError::Decode {
        path: name.into(),
        reason: e.to_string(),
    })
}

/// The largest chime file accepted. A chime is a second or two (the built-in one is
/// 70 kB); a bigger file is a wrong path, and reading it whole would cost its size in memory.
pub const MAX_CHIME_BYTES: u64 = 5 * 1024 * 1024;

/// The chime to play, checked once at start so a bad `chime_path` is reported right away.
fn load_chime(config: &AudioConfig) -> Result<Option<Arc<[u8]>>, AudioError> {
    if !config.chime {
        return Ok(None);
    }
    let bytes: Arc<[u8]> = match &config.chime_path {
        None => Arc::from(BUILTIN_CHIME),
        Some(path) => {
            let chime_error = |reason: String| AudioError::Chime {
                path: path.clone(),
                reason,
            };
            let bytes = read_chime_file(path).map_err(chime_error)?;
            decode(bytes.clone(), path.clone()).map_err(|e| chime_error(e.to_string()))?;
            Arc::from(bytes)
        }
    };
    Ok(Some(bytes))
}

/// Reads a chime file of at most [`MAX_CHIME_BYTES`]. Only a regular file is read, and
/// never more than the limit: `/dev/zero` reports a size of 0 and never ends, and a file
/// may grow between a size check and the read.
fn read_chime_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let not_regular = || "it is not a regular file".to_string();
    // Checked before opening too: opening a FIFO would wait for a writer forever.
    if !std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .is_file()
    {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_big = || format!("it is larger than {} MB", MAX_CHIME_BYTES / (1024 * 1024));
    if meta.len() > MAX_CHIME_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CHIME_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CHIME_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

fn clamp_volume(volume: f32) -> f32 {
    if volume.is_nan() {
        1.0
    } else {
        volume.clamp(0.0, 2.0)
    }
}

/// Opens the default output (the first of [`OUTPUTS`]), plays a fifth of a second of
/// silence and closes it again, on a thread of its own so that a sound stack that never
/// answers costs `timeout`, not the caller. For `doctor` and the demo, which want to know
/// before they start whether anything can be heard.
pub fn probe(timeout: Duration) -> Result<(), AudioError> {
    let (done, result) = mpsc::channel();
    std::thread::Builder::new()
        .name("paysay-audio-probe".into())
        .spawn(move || {
            let mut output = (OUTPUTS[0].1)();
            let played = output.start().and_then(|()| output.write(silence()));
            output.stop();
            let _ = done.send(played);
        })
        .map_err(AudioError::Thread)?;
    match result.recv_timeout(timeout) {
        Ok(played) => played,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(AudioError::NoDevice(format!(
            "the sound device did not answer within {} s",
            timeout.as_secs()
        ))),
        // The thread ended without an answer: the audio stack panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(AudioError::Output(
            "the audio output crashed while opening the device".into(),
        )),
    }
}

fn silence() -> Sound {
    const RATE: std::num::NonZeroU32 = std::num::NonZeroU32::new(48_000).unwrap();
    const STEREO: std::num::NonZeroU16 = std::num::NonZeroU16::new(2).unwrap();
    Box::new(rodio::source::Zero::new(STEREO, RATE).take_duration(Duration::from_millis(200)))
}
