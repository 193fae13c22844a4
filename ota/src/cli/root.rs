//! `root init|sign|rotate|verify`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use crate::cli::CliError;
use crate::cli::util::{emit, fmt_time, now, parse_time, read, write_atomic};
use crate::keys::{self, KeyId, PublicKey};
use crate::limits::Limits;
use crate::root::{KeyEntry, Role, RootFile, RootSigned, TrustedRoot};

/// `root` subcommands.
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Create version 1 of a root (unsigned unless --sign is given).
    Init {
        /// Root-role public keys (PEM; private PEMs are accepted and only their public half is used).
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// Root-role threshold.
        #[arg(long, default_value_t = 1)]
        root_threshold: u32,
        /// Release-role public keys.
        #[arg(long = "release-key", required = true)]
        release_keys: Vec<PathBuf>,
        /// Release-role threshold.
        #[arg(long, default_value_t = 1)]
        release_threshold: u32,
        /// Expiry (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        expires: OffsetDateTime,
        /// Private keys to sign with right away.
        #[arg(long = "sign")]
        sign: Vec<PathBuf>,
        /// Output root.json.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Add signatures to a root (in place unless -o).
    Sign {
        /// The root.json.
        root: PathBuf,
        /// Private keys to sign with.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Output (default: overwrite the input).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Make the next root version from a previous one, changing keys and thresholds.
    /// Sign it with a threshold of the old AND the new root keys.
    Rotate(RotateArgs),
    /// Verify a root on its own, or a chain: the first trusted on its own, each next one as a rotation.
    Verify {
        /// root.json files, oldest first.
        #[arg(required = true)]
        roots: Vec<PathBuf>,
        /// Time to check expiry against (default: now).
        #[arg(long, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
}

/// Arguments of `root rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The current root.json.
    #[arg(long)]
    pub from: PathBuf,
    /// Root keys to add.
    #[arg(long)]
    pub add_root_key: Vec<PathBuf>,
    /// Root keys to remove (PEM file or key id).
    #[arg(long)]
    pub remove_root_key: Vec<String>,
    /// Release keys to add.
    #[arg(long)]
    pub add_release_key: Vec<PathBuf>,
    /// Release keys to remove (PEM file or key id).
    #[arg(long)]
    pub remove_release_key: Vec<String>,
    /// New root threshold.
    #[arg(long)]
    pub root_threshold: Option<u32>,
    /// New release threshold.
    #[arg(long)]
    pub release_threshold: Option<u32>,
    /// Expiry of the new version (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub expires: OffsetDateTime,
    /// Private keys to sign with right away.
    #[arg(long = "sign")]
    pub sign: Vec<PathBuf>,
    /// Output root.json.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs a `root` subcommand.
pub fn run(cmd: RootCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        RootCommand::Init {
            root_keys,
            root_threshold,
            release_keys,
            release_threshold,
            expires,
            sign,
            output,
        } => {
            let roots = read_keys(&root_keys)?;
            let releases = read_keys(&release_keys)?;
            let signed = RootSigned::new(expires, (&roots, root_threshold), (&releases, release_threshold))?;
            finish(RootFile::unsigned(signed), &sign, &output, json)
        }
        RootCommand::Sign { root, keys, output } => {
            let file = RootFile::parse(&read(&root)?, &Limits::DEFAULT)?;
            finish(file, &keys, output.as_deref().unwrap_or(&root), json)
        }
        RootCommand::Rotate(args) => rotate(args, json),
        RootCommand::Verify { roots, now: at } => verify_chain(&roots, at.unwrap_or_else(now), json),
    }
}

fn rotate(args: RotateArgs, json: bool) -> Result<(), CliError> {
    let old = RootFile::parse(&read(&args.from)?, &Limits::DEFAULT)?;
    let mut next = old.signed.next_version(args.expires);
    let roles = [
        (
            &mut next.roles.root,
            &args.add_root_key,
            &args.remove_root_key,
            args.root_threshold,
        ),
        (
            &mut next.roles.release,
            &args.add_release_key,
            &args.remove_release_key,
            args.release_threshold,
        ),
    ];
    let mut added = Vec::new();
    for (role, add, remove, threshold) in roles {
        added.extend(edit_role(role, add, remove, threshold)?);
    }
    for key in added {
        next.keys.insert(key.id(), KeyEntry::new(&key));
    }
    let used: BTreeSet<KeyId> = next
        .roles
        .root
        .keyids
        .union(&next.roles.release.keyids)
        .copied()
        .collect();
    next.keys.retain(|id, _| used.contains(id));
    next.validate()?;
    finish(RootFile::unsigned(next), &args.sign, &args.output, json)
}

fn read_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, CliError> {
    paths
        .iter()
        .map(|p| keys::read_public_key(p).map_err(CliError::from))
        .collect()
}

fn key_ref(text: &str) -> Result<KeyId, CliError> {
    if let Ok(id) = text.parse::<KeyId>() {
        return Ok(id);
    }
    Ok(keys::read_public_key(Path::new(text))?.id())
}

fn edit_role(
    role: &mut Role,
    add: &[PathBuf],
    remove: &[String],
    threshold: Option<u32>,
) -> Result<Vec<PublicKey>, CliError> {
    for text in remove {
        let id = key_ref(text)?;
        if !role.keyids.remove(&id) {
            return Err(CliError::Usage(format!("key {id} is not in the role")));
        }
    }
    let added = read_keys(add)?;
    role.keyids.extend(added.iter().map(PublicKey::id));
    if let Some(t) = threshold {
        role.threshold = t;
    }
    Ok(added)
}

fn finish(mut file: RootFile, signers: &[PathBuf], output: &Path, json: bool) -> Result<(), CliError> {
    for path in signers {
        file.sign(&keys::read_private_key(path)?);
    }
    write_atomic(output, &file.to_json())?;
    let signed = &file.signed;
    let ids: Vec<String> = file.signatures.iter().map(|s| s.keyid.to_string()).collect();
    emit(
        json,
        &json!({"root": output, "version": signed.version, "expires": fmt_time(signed.expires), "signatures": ids}),
        &format!(
            "wrote {} (version {}, expires {}, {} signature(s))",
            output.display(),
            signed.version,
            fmt_time(signed.expires),
            ids.len()
        ),
    );
    Ok(())
}

/// Trusts the first root on its own and applies each next one as a rotation.
pub fn load_chain(paths: &[PathBuf], now: OffsetDateTime) -> Result<TrustedRoot, CliError> {
    let limits = Limits::DEFAULT;
    let mut trusted: Option<TrustedRoot> = None;
    for path in paths {
        let bytes = read(path)?;
        trusted = Some(match &trusted {
            None => TrustedRoot::from_bytes(&bytes, now, &limits)?,
            Some(current) => current.rotate(&bytes, now, &limits)?,
        });
    }
    trusted.ok_or_else(|| CliError::Usage("no root given".to_owned()))
}

fn verify_chain(paths: &[PathBuf], now: OffsetDateTime, json: bool) -> Result<(), CliError> {
    let root = load_chain(paths, now)?;
    let s = root.signed();
    let role = |r: &Role| json!({"keyids": r.keyids, "threshold": r.threshold});
    emit(
        json,
        &json!({
            "ok": true, "version": s.version, "expires": fmt_time(s.expires),
            "roles": {"root": role(&s.roles.root), "release": role(&s.roles.release)},
        }),
        &format!(
            "root OK: version {}, expires {}, root {}-of-{}, release {}-of-{}",
            s.version,
            fmt_time(s.expires),
            s.roles.root.threshold,
            s.roles.root.keyids.len(),
            s.roles.release.threshold,
            s.roles.release.keyids.len()
        ),
    );
    Ok(())
}
