//! Token files for the command line: a new token is written where only its owner can read it, and a token is
//! read back from such a file, so no token ever has to appear on a command line, in a shell history or in a log.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A token file is a line of text; anything longer is not one.
const MAX_TOKEN_FILE: u64 = 4096;

/// Why a token file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path} already exists; a token file is never overwritten (remove it first, or pick another path)")]
    Exists { path: PathBuf },
    #[error("cannot write the token file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the token file {path}: {source}; pass the file the token was written to")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} has mode {mode:04o}, so other users can read the token; run `chmod 600 {path}`")]
    Readable { path: PathBuf, mode: u32 },
    #[error("the token file {path} is empty; write the token into it")]
    Empty { path: PathBuf },
}

/// Writes `token` and a newline to a new file at `path`, mode 0600.
pub fn write_new(path: &Path, token: &str) -> Result<(), SecretFileError> {
    let write = |source| SecretFileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => SecretFileError::Exists {
                path: path.to_owned(),
            },
            _ => write(source),
        })?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write)
}

/// Reads the token in the file at `path`, which must not be readable by other users.
pub fn read(path: &Path) -> Result<String, SecretFileError> {
    let read = |source| SecretFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mode = file.metadata().map_err(read)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Readable {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(read)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_private_never_overwritten_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t");
        write_new(&path, "abc")?;
        assert_eq!(std::fs::metadata(&path)?.mode() & 0o777, 0o600);
        assert!(matches!(
            write_new(&path, "other"),
            Err(SecretFileError::Exists { .. })
        ));
        assert_eq!(read(&path)?, "abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(read(&path), Err(SecretFileError::Readable { .. })));
        Ok(())
    }
}
