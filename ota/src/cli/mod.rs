//! The `halyard-ota` command line. `main.rs` only parses arguments, sets up tracing and maps
//! [`CliError`] to an exit code; everything else is here so it can be tested as a library.
//!
//! - [`keys`]: `keygen`, `key-id`; [`root`]: `root init|sign|rotate|verify`;
//! - [`bundle_create`]: `bundle create|sign|inspect`; [`bundle_verify`]: `bundle verify`;
//! - [`delta`]: the raw `diff OLD NEW -o PATCH` / `apply OLD PATCH -o NEW` pair;
//! - [`util`]: atomic output files, progress bars, time parsing, text/JSON output.

pub mod bundle_create;
pub mod bundle_verify;
pub mod delta;
pub mod keys;
pub mod root;
pub mod util;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bundle::BundleError;
use crate::delta::DeltaError;
use crate::keys::KeyError;
use crate::manifest::ManifestError;
use crate::root::RootError;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: bad usage, unreadable input, I/O failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: a signature, digest, policy or format check rejected the input.
pub const EXIT_REJECTED: u8 = 2;

const AFTER_HELP: &str = "\
Exit status:
  0  success
  1  usage error, unreadable input or I/O failure
  2  verification failed: bad or missing signatures, digest mismatch, policy refusal
     (product, expiry, security version, delta source), malformed or truncated file

Outputs are written to a temporary file next to the destination and renamed only on success.
Set RUST_LOG (e.g. RUST_LOG=debug) for logs on stderr.";

/// Halyard update tooling: keys, trust roots, signed bundles and binary deltas.
#[derive(Debug, Parser)]
#[command(name = "halyard-ota", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 key pair (PKCS#8 private PEM, mode 0600, and SPKI public PEM).
    Keygen(keys::KeygenArgs),
    /// Print the key id (SHA-256 of the SPKI DER) of a public or private key PEM.
    KeyId {
        /// PEM file.
        key: PathBuf,
    },
    /// Create, sign, rotate and verify trust roots (root.json).
    #[command(subcommand)]
    Root(root::RootCommand),
    /// Create, sign, inspect and verify bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Make a delta patch: halyard-ota diff OLD NEW -o PATCH.
    Diff(delta::DiffArgs),
    /// Apply a delta patch as a stream: halyard-ota apply OLD PATCH -o NEW.
    Apply(delta::ApplyArgs),
}

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Build a bundle from an image (full) or from an old and a new image (delta), optionally signed.
    Create(bundle_create::CreateArgs),
    /// Add signatures: with private keys, or a raw signature made elsewhere (openssl, HSM).
    Sign(bundle_create::SignArgs),
    /// Show a bundle's header and manifest WITHOUT verifying them; optionally extract the manifest.
    Inspect(bundle_create::InspectArgs),
    /// Verify a bundle against a trust root and policy; optionally write the verified target image.
    Verify(bundle_verify::VerifyArgs),
}

/// Errors of the command line, each mapped to an exit status by [`CliError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// File or stream I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (with the path).
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Bad arguments or input that is not a bundle/root/key problem.
    #[error("{0}")]
    Usage(String),
    /// Key problems.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Trust root problems.
    #[error(transparent)]
    Root(#[from] RootError),
    /// Manifest construction problems.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Bundle rejections and I/O.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Delta engine errors.
    #[error("delta: {0}")]
    Delta(#[from] DeltaError),
}

impl CliError {
    /// The documented exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Io { .. } | Self::Usage(_) | Self::Manifest(_) => EXIT_FAILURE,
            Self::Key(KeyError::BadSignature { .. } | KeyError::SignatureLength { .. }) => EXIT_REJECTED,
            Self::Key(_) => EXIT_FAILURE,
            Self::Root(_) => EXIT_REJECTED,
            Self::Bundle(e) if e.is_rejection() => EXIT_REJECTED,
            Self::Bundle(_) => EXIT_FAILURE,
            Self::Delta(
                DeltaError::Io { .. } | DeltaError::InvalidOptions { .. } | DeltaError::InputTooLarge { .. },
            ) => EXIT_FAILURE,
            Self::Delta(_) => EXIT_REJECTED,
        }
    }

    /// A stable snake_case code naming the error (the bundle rejection reason where there is one).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Usage(_) => "usage",
            Self::Key(_) => "key",
            Self::Root(_) => "root",
            Self::Manifest(_) => "manifest",
            Self::Bundle(e) => e.code(),
            Self::Delta(_) => "delta",
        }
    }

    /// An `Io` error with context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    match cli.command {
        Command::Keygen(args) => keys::keygen(&args, json),
        Command::KeyId { key } => keys::key_id(&key, json),
        Command::Root(cmd) => root::run(cmd, json),
        Command::Bundle(BundleCommand::Create(args)) => bundle_create::create(&args, json),
        Command::Bundle(BundleCommand::Sign(args)) => bundle_create::sign(&args, json),
        Command::Bundle(BundleCommand::Inspect(args)) => bundle_create::inspect(&args, json),
        Command::Bundle(BundleCommand::Verify(args)) => bundle_verify::verify(&args, json),
        Command::Diff(args) => delta::diff(&args, json),
        Command::Apply(args) => delta::apply(&args, json),
    }
}
