//! Finding the PostgreSQL server binaries.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::TestkitError;

/// Where Debian and Ubuntu install server binaries, one directory per major version.
const DEBIAN_LIB_ROOT: &str = "/usr/lib/postgresql";

/// The server binaries of one PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binaries {
    pub(crate) initdb: PathBuf,
    pub(crate) postgres: PathBuf,
}

impl Binaries {
    /// Finds `initdb` and `postgres`: first a directory on `PATH` holding both, else the highest
    /// version under `/usr/lib/postgresql/*/bin`.
    pub(crate) fn find() -> Result<Self, TestkitError> {
        find_in(
            std::env::var_os("PATH").as_deref(),
            Path::new(DEBIAN_LIB_ROOT),
        )
    }

    /// Another program of the same installation (`pg_basebackup`): beside `initdb`, beside the
    /// file a symlinked `initdb` points to, or on `PATH` (the name itself when none is found, so
    /// the spawn error names it).
    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        let beside = self.initdb.with_file_name(name);
        let resolved = std::fs::canonicalize(&self.initdb)
            .ok()
            .map(|real| real.with_file_name(name));
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name));
        std::iter::once(beside)
            .chain(resolved)
            .chain(on_path)
            .find(|p| is_executable(p))
            .unwrap_or_else(|| PathBuf::from(name))
    }

    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = dir.join("initdb");
        let postgres = dir.join("postgres");
        (is_executable(&initdb) && is_executable(&postgres)).then_some(Self { initdb, postgres })
    }
}

fn find_in(path_var: Option<&OsStr>, lib_root: &Path) -> Result<Binaries, TestkitError> {
    if let Some(found) = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .find_map(|dir| Binaries::in_dir(&dir))
    {
        return Ok(found);
    }

    let mut versions: Vec<(Vec<u32>, Binaries)> = std::fs::read_dir(lib_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = version_key(entry.file_name().to_str()?)?;
            Some((version, Binaries::in_dir(&entry.path().join("bin"))?))
        })
        .collect();
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    versions
        .pop()
        .map(|(_, binaries)| binaries)
        .ok_or_else(|| TestkitError::BinariesNotFound {
            searched: format!("on PATH and under {}/*/bin", lib_root.display()),
        })
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything else is not a version directory.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tenant-guard-testkit-binaries-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fake_install(bin: &Path) {
        std::fs::create_dir_all(bin).unwrap();
        for name in ["initdb", "postgres", "pg_ctl"] {
            let file = bin.join(name);
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn version_keys_order_numerically() {
        assert_eq!(version_key("15"), Some(vec![15]));
        assert_eq!(version_key("9.6"), Some(vec![9, 6]));
        assert_eq!(version_key("common"), None);
        assert!(version_key("9.6") < version_key("10"));
    }

    #[test]
    fn picks_the_highest_version_under_the_lib_root() {
        let root = scratch("versions");
        for version in ["9.6", "16", "13"] {
            fake_install(&root.join(version).join("bin"));
        }
        std::fs::create_dir_all(root.join("17").join("bin")).unwrap(); // no binaries: skipped
        let found = find_in(None, &root).unwrap();
        assert_eq!(found.initdb, root.join("16/bin/initdb"));
        assert_eq!(found.postgres, root.join("16/bin/postgres"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn path_comes_first() {
        let root = scratch("path");
        fake_install(&root.join("lib/16/bin"));
        fake_install(&root.join("custom"));
        let path: OsString =
            std::env::join_paths([root.join("empty"), root.join("custom")]).unwrap();
        let found = find_in(Some(&path), &root.join("lib")).unwrap();
        assert_eq!(found.initdb, root.join("custom/initdb"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn nothing_found_says_what_to_install() {
        let root = scratch("none");
        let err = find_in(Some(OsStr::new("")), &root).unwrap_err();
        assert!(matches!(err, TestkitError::BinariesNotFound { .. }));
        assert!(err.to_string().contains("apt-get install postgresql"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
