//! `keygen` and `key-id`.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::CliError;
use crate::cli::util::emit;
use crate::keys::{self, PrivateKey};

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Private key file to create (PKCS#8 PEM, mode 0600; must not exist).
    pub private: PathBuf,
    /// Public key file to create (SPKI PEM); default: the private path with extension `.pub`.
    #[arg(long)]
    pub public: Option<PathBuf>,
}

/// Generates a key pair.
pub fn keygen(args: &KeygenArgs, json: bool) -> Result<(), CliError> {
    let public_path = args
        .public
        .clone()
        .unwrap_or_else(|| args.private.with_extension("pub"));
    if public_path == args.private {
        return Err(CliError::Usage(
            "public and private key paths must differ".to_owned(),
        ));
    }
    if let Some(existing) = [&args.private, &public_path].into_iter().find(|p| p.exists()) {
        return Err(CliError::Usage(format!("{} already exists", existing.display())));
    }
    let key = PrivateKey::generate()?;
    keys::write_private_key(&args.private, &key)?;
    keys::write_public_key(&public_path, &key.public())?;
    let id = key.public().id();
    emit(
        json,
        &json!({"key_id": id, "private": args.private, "public": public_path}),
        &format!(
            "key id {id}\nprivate {}\npublic  {}",
            args.private.display(),
            public_path.display()
        ),
    );
    Ok(())
}

/// Prints a key's id.
pub fn key_id(path: &Path, json: bool) -> Result<(), CliError> {
    let id = keys::read_public_key(path)?.id();
    emit(json, &json!({"key_id": id}), &id.to_string());
    Ok(())
}
