//! The agent as the binary runs it: [`run`] (connect, drive, serve), [`status`] (journal and slots)
//! and [`install_file`] (an offline update from a local bundle through the same download, verify and
//! install path as an online one). [`link::Link`] is the loop between driver and broker; [`setup`]
//! builds hardware and trust from the config.

pub mod fallback;
pub mod link;
pub mod setup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use halyard_protocol::{Artifact, DesiredAction, EnvelopeError, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::driver::{Driver, DriverError, Halt, Hardware};
use crate::faults::NoCrash;
use crate::fetch::{DirFetcher, Interruptible};
use crate::identity::{Identity, IdentityError, SeqCounter};
use crate::journal::{Journal, JournalError};
use crate::transport::api::ServerApi;
use crate::transport::http::{CaError, HttpFetcher};
use crate::transport::mqtt::PublishError;

pub use link::Link;

/// The agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The driver failed (the journal holds the last durable state).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Identity key or sequence counter.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Sealing a message.
    #[error("sealing a message: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The MQTT client is gone.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Boot control could not be opened.
    #[error("boot control: {0}")]
    Boot(#[from] halyard_hardware::BootError),
    /// A slot device could not be opened.
    #[error("slot device: {0}")]
    Block(#[from] halyard_hardware::BlockError),
    /// Watchdog or power.
    #[error("device: {0}")]
    Device(#[from] halyard_hardware::DeviceError),
    /// The HTTPS CA file.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// Enrollment failed or its record is unusable.
    #[error(transparent)]
    Enroll(#[from] crate::enroll::EnrollError),
    /// The configuration cannot work as given (e.g. `broker = "auto"` without an enrollment).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Trust root or server key.
    #[error("trust material {path}: {reason}")]
    Trust {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A local bundle could not be read.
    #[error("bundle {path}: {reason}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Run the agent on this machine until it reboots it or `stop` is set. A device with an enrollment
/// token and no enrollment record enrolls first (retrying while the server is unreachable). A
/// download in progress when `stop` is set pauses at its next chunk boundary (journaled; the next
/// start resumes it); an install in progress runs to its end first.
pub fn run(settings: &Settings, stop: &AtomicBool) -> Result<Halt, AppError> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Mirrors `stop` into a flag the download can own (the fetcher outlives this borrow).
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if stop.load(Ordering::SeqCst) {
                    interrupt.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let halt = run_agent(settings, stop, interrupt.clone());
        done.store(true, Ordering::SeqCst);
        halt
    })
}

fn run_agent(settings: &Settings, stop: &AtomicBool, interrupt: Arc<AtomicBool>) -> Result<Halt, AppError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    create_data_dir(settings)?;
    let identity = Identity::load_or_create(&settings.data_dir, &NoCrash)?;
    let seq = SeqCounter::open(&settings.data_dir, Arc::new(NoCrash))?;
    let api = ServerApi::new(&settings.server_url, &settings.http)?;
    let Some(enrollment) = setup::enrollment(settings, &identity, &api, stop)? else {
        return Ok(Halt::Waiting);
    };
    let server_key = match &enrollment {
        Some(e) => e.verifying_key()?,
        None => setup::server_key(&settings.server_key)?,
    };
    let mqtt = setup::mqtt_settings(settings, enrollment.as_ref())?;
    // From here on the server's own CA (if it handed one out) is the only one trusted.
    let http = setup::http_settings(settings, enrollment.as_ref());
    // With a client certificate from enrollment the agent presents it wherever a server asks.
    let client = enrollment
        .as_ref()
        .and_then(|e| e.client_identity(&settings.data_dir));
    let api = ServerApi::with_client_cert(&settings.server_url, &http, client.as_ref())?;
    if let Some(ca) = &mqtt.tls_ca {
        crate::transport::mqtt::tls_config_with_cert(ca, client.as_ref())?;
    }
    let driver_settings = setup::driver_settings(settings, clock.now())?;
    let hardware = setup::linux_hardware(settings)?;
    // Artifacts may come from a CDN: a configured `ca_file` (which may bundle several authorities)
    // wins there; without one the pinned fleet CA serves for artifacts on the server itself.
    let fetch_http = match settings.http.ca_file {
        Some(_) => settings.http.clone(),
        None => http,
    };
    let fetcher = HttpFetcher::with_client_cert(&fetch_http, client.as_ref())?;
    let fetcher = Box::new(Interruptible::new(fetcher, interrupt));
    let (mut driver, _) = Driver::start(
        driver_settings,
        hardware,
        fetcher,
        clock.clone(),
        Arc::new(NoCrash),
    )?;
    let mut link = Link::connect_with_cert(
        &mqtt,
        client.as_ref(),
        identity.device_id().clone(),
        identity.signing_key(),
        seq,
        server_key,
        clock,
    )
    .with_http_fallback(api, settings.fallback);
    tracing::info!(device = %identity.device_id(), "agent running");
    let halt = link.serve(&mut driver, settings.mqtt.tick, stop);
    link.shutdown();
    halt
}

/// The journal's state and slot images, as text.
pub fn status(settings: &Settings) -> Result<String, AppError> {
    let journal = Journal::new(&settings.data_dir, Arc::new(NoCrash));
    let Some(record) = journal.load()? else {
        return Ok(format!(
            "no journal in {} (the agent has not run yet)\n",
            settings.data_dir.display()
        ));
    };
    let slot = |image: Option<&crate::fsm::Image>| match image {
        Some(i) => format!("{} ({} bytes, sha256 {})", i.version, i.size, i.sha256),
        None => "empty".to_owned(),
    };
    let enrolled = match crate::enroll::load(&settings.data_dir)? {
        Some(e) => format!(
            "{} at {}, broker {}",
            e.answer.device_id, e.server_url, e.answer.broker
        ),
        None => "no (server key from the config)".to_owned(),
    };
    Ok(format!(
        "state: {:?}\nslot A: {}\nslot B: {}\nsecurity floor: {}\nenrolled: {enrolled}\n",
        record.state,
        slot(record.images.get(halyard_protocol::Slot::A)),
        slot(record.images.get(halyard_protocol::Slot::B)),
        record.security_floor,
    ))
}

/// Install a local bundle (USB stick, service laptop) through the driver's normal path: it is copied
/// into the data directory as a download, verified against the trust root and installed into the
/// inactive slot; the device then reboots into it and runs its trial as usual.
pub fn install_file(settings: &Settings, bundle: &Path, hardware: Hardware) -> Result<Halt, AppError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fail = |reason: String| AppError::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let name = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| fail("no file name".into()))?
        .to_owned();
    let dir = bundle.parent().unwrap_or(Path::new("."));
    let (sha256, size) = file_digest(bundle).map_err(|e| fail(e.to_string()))?;
    create_data_dir(settings)?;
    let driver_settings = setup::driver_settings(settings, clock.now())?;
    let fetcher = Box::new(DirFetcher::new(dir));
    let (mut driver, halt) = Driver::start(driver_settings, hardware, fetcher, clock, Arc::new(NoCrash))?;
    if halt == Halt::Rebooting {
        return Ok(halt);
    }
    let action = DesiredAction::Install {
        version: format!("local:{name}"),
        bundle: Artifact {
            url: name.clone(),
            sha256,
            size,
        },
        deltas: Vec::new(),
        window: None,
        deadline: None,
    };
    let halt = driver.desired(Some("offline".into()), action)?;
    tracing::info!(state = driver.state().name(), "offline install settled");
    match halt {
        Halt::Rebooting => Ok(halt),
        Halt::Waiting => Err(fail(format!("not installed, the agent is {:?}", driver.state()))),
    }
}

fn create_data_dir(settings: &Settings) -> Result<(), AppError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| AppError::Trust {
        path: settings.data_dir.clone(),
        reason: e.to_string(),
    })
}

fn file_digest(path: &Path) -> std::io::Result<(Sha256, u64)> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            return Ok((Sha256(hasher.finalize().into()), size));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}
