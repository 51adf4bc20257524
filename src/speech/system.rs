//! The operating system's own voice: espeak-ng on Linux, `say` on macOS, SAPI (through
//! PowerShell) on Windows. Needs no account and no network, so it is the default backend and
//! the usual last entry of the fallback chain.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::{Audio, AudioFormat, SynthFuture, Synthesizer, TtsError};
use crate::config::SystemVoiceConfig;

/// Longest a synthesis program may run: an announcement is a few seconds of speech, so this
/// only catches a hung program.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The platform's speech program and how to drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// espeak-ng (Linux and most Unixes).
    Espeak,
    /// macOS `say`.
    Say,
    /// Windows System.Speech through PowerShell.
    Sapi,
}

impl Engine {
    /// The engine of the platform paysay was built for.
    pub fn native() -> Engine {
        if cfg!(target_os = "macos") {
            Engine::Say
        } else if cfg!(windows) {
            Engine::Sapi
        } else {
            Engine::Espeak
        }
    }

    fn default_program(self) -> &'static str {
        match self {
            Engine::Espeak => "espeak-ng",
            Engine::Say => "say",
            Engine::Sapi => "powershell",
        }
    }

    fn default_voice(self) -> &'static str {
        match self {
            Engine::Espeak => "cmn",
            Engine::Say => "Tingting",
            // Empty: the script picks an installed zh-CN voice.
            Engine::Sapi => "",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Engine::Espeak => {
                "install it with `apt install espeak-ng`, or set speech.system.command"
            }
            Engine::Say => "`say` ships with macOS; set speech.system.command if it moved",
            Engine::Sapi => "Windows PowerShell is needed; set speech.system.command to its path",
        }
    }
}

/// The system voice backend, from `[speech.system]`.
pub struct SystemSynthesizer {
    engine: Engine,
    program: PathBuf,
    voice: String,
    rate: u32,
}

/// SAPI's script: the text, voice, rate and output path come in through the environment, so
/// no text can break out of PowerShell quoting.
const SAPI_SCRIPT: &str = "Add-Type -AssemblyName System.Speech; \
$s = New-Object System.Speech.Synthesis.SpeechSynthesizer; \
if ($env:PAYSAY_VOICE) { $s.SelectVoice($env:PAYSAY_VOICE) } \
else { try { $s.SelectVoiceByHints('NotSet', 'NotSet', 0, [Globalization.CultureInfo]'zh-CN') } catch {} }; \
$s.Rate = [int]$env:PAYSAY_RATE; \
$s.SetOutputToWaveFile($env:PAYSAY_OUT); \
$s.Speak($env:PAYSAY_TEXT); \
$s.Dispose()";

impl SystemSynthesizer {
    /// The native engine with `config`'s voice, rate and program.
    pub fn new(config: &SystemVoiceConfig) -> SystemSynthesizer {
        SystemSynthesizer::with_engine(Engine::native(), config)
    }

    /// A given engine (tests build the espeak-ng one explicitly).
    pub fn with_engine(engine: Engine, config: &SystemVoiceConfig) -> SystemSynthesizer {
        let voice = if config.voice.is_empty() {
            engine.default_voice().to_string()
        } else {
            config.voice.clone()
        };
        SystemSynthesizer {
            engine,
            program: config
                .command
                .clone()
                .unwrap_or_else(|| PathBuf::from(engine.default_program())),
            voice,
            rate: config.rate,
        }
    }

    /// Arguments and environment for writing `text` to `out`.
    fn invocation(&self, text: &str, out: &Path) -> (Vec<OsString>, Vec<(&'static str, OsString)>) {
        let rate = self.rate.to_string();
        let mut args: Vec<OsString> = Vec::new();
        let mut env = Vec::new();
        match self.engine {
            Engine::Espeak => {
                args.extend(["-v", &self.voice, "-s", &rate, "-w"].map(OsString::from));
                args.push(out.into());
                args.push(text.into());
            }
            Engine::Say => {
                if !self.voice.is_empty() {
                    args.extend(["-v", &self.voice].map(OsString::from));
                }
                args.extend(
                    [
                        "-r",
                        &rate,
                        "--file-format=WAVE",
                        "--data-format=LEI16@22050",
                        "-o",
                    ]
                    .map(OsString::from),
                );
                args.push(out.into());
                args.push(text.into());
            }
            Engine::Sapi => {
                args.extend(
                    ["-NoProfile", "-NonInteractive", "-Command", SAPI_SCRIPT].map(OsString::from),
                );
                env.push(("PAYSAY_TEXT", text.into()));
                env.push(("PAYSAY_VOICE", self.voice.clone().into()));
                env.push(("PAYSAY_RATE", sapi_rate(self.rate).to_string().into()));
                env.push(("PAYSAY_OUT", out.into()));
            }
        }
        (args, env)
    }

    async fn speak(&self, text: &str) -> Result<Audio, TtsError> {
        // The temporary file is removed when `out` drops, on every path out of here.
        let out = tempfile::Builder::new()
            .prefix("paysay-tts-")
            .suffix(".wav")
            .tempfile()
            .map_err(TtsError::TempFile)?
            .into_temp_path();
        let (args, env) = self.invocation(text, &out);
        let program = self.program.display().to_string();
        let child = tokio::process::Command::new(&self.program)
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TtsError::ProgramMissing {
                    program: program.clone(),
                    hint: self.engine.install_hint(),
                },
                _ => TtsError::ProgramFailed {
                    program: program.clone(),
                    status: "could not start".into(),
                    stderr: e.to_string(),
                },
            })?;
        let output = tokio::time::timeout(PROGRAM_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| TtsError::ProgramTimeout {
                program: program.clone(),
                secs: PROGRAM_TIMEOUT.as_secs(),
            })?
            .map_err(|e| TtsError::ProgramFailed {
                program: program.clone(),
                status: "lost".into(),
                stderr: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(TtsError::ProgramFailed {
                program,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let bytes = tokio::fs::read(&out).await.map_err(TtsError::TempFile)?;
        // A WAV header alone is 44 bytes: anything that short holds no speech.
        if bytes.len() <= 44 {
            return Err(TtsError::EmptyAudio { backend: "system" });
        }
        Ok(Audio {
            bytes,
            format: AudioFormat::Wav,
        })
    }
}

/// SAPI's rate runs -10…10 with 0 at about 160 words per minute; each step is roughly 10%
/// faster or slower, so map the configured words per minute logarithmically.
pub fn sapi_rate(words_per_minute: u32) -> i32 {
    let ratio = f64::from(words_per_minute.max(1)) / 160.0;
    let steps = ratio.ln() / 1.1f64.ln();
    steps.round().clamp(-10.0, 10.0) as i32
}

impl Synthesizer for SystemSynthesizer {
    fn name(&self) -> &'static str {
        "system"
    }

    fn voice(&self) -> String {
        format!(
            "{:?}|{}|{}|{}",
            self.engine,
            self.program.display(),
            self.voice,
            self.rate
        )
    }

    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a> {
        Box::pin(self.speak(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sapi_rate_is_centred_on_normal_speech() {
        assert_eq!(sapi_rate(160), 0);
        assert!(sapi_rate(200) > 0 && sapi_rate(120) < 0);
        assert_eq!(sapi_rate(450), 10);
        assert_eq!(sapi_rate(80), -7);
    }

    #[test]
    fn say_and_espeak_get_voice_rate_and_file() {
        let config = SystemVoiceConfig {
            voice: String::new(),
            rate: 180,
            command: None,
        };
        let out = Path::new("/tmp/x.wav");
        let (args, _) =
            SystemSynthesizer::with_engine(Engine::Espeak, &config).invocation("你好", out);
        assert_eq!(
            args,
            ["-v", "cmn", "-s", "180", "-w", "/tmp/x.wav", "你好"].map(OsString::from)
        );
        let (args, _) =
            SystemSynthesizer::with_engine(Engine::Say, &config).invocation("你好", out);
        assert!(
            args.contains(&"--data-format=LEI16@22050".into()),
            "{args:?}"
        );
        assert!(
            args.windows(2)
                .any(|w| w == ["-v", "Tingting"].map(OsString::from)),
            "{args:?}"
        );
        let (_, env) =
            SystemSynthesizer::with_engine(Engine::Sapi, &config).invocation("你好", out);
        assert!(env.contains(&("PAYSAY_TEXT", "你好".into())), "{env:?}");
    }
}
