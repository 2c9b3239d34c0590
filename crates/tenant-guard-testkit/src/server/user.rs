//! Running the server as an unprivileged user when the test process is root.
//!
//! PostgreSQL refuses to run as root. Without `unsafe` or libc we cannot `setuid` ourselves, so
//! `initdb` and `postgres` are started through util-linux's `setpriv` (which `exec`s the program,
//! so the child is the server itself) or, failing that, `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::TestkitError;

/// Users to run the server as, in order of preference.
const CANDIDATE_USERS: [&str; 2] = ["postgres", "nobody"];

/// Directories searched for `setpriv`/`runuser` besides `PATH` (root's `PATH` may lack `sbin`).
const SYSTEM_DIRS: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The user the server runs as, when the test process is root.
#[derive(Debug, Clone)]
pub(crate) struct ServerUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    switch: Switch,
}

#[derive(Debug, Clone)]
enum Switch {
    /// `setpriv --reuid --regid --clear-groups -- PROGRAM`: replaces itself with the program.
    Setpriv(PathBuf),
    /// `runuser -u USER -- PROGRAM`: forks and waits.
    Runuser(PathBuf),
}

impl ServerUser {
    /// `None` when the process is not root (the server runs as the current user); otherwise the
    /// unprivileged user to run it as.
    pub(crate) fn for_current_process() -> Result<Option<Self>, TestkitError> {
        if effective_uid()? != 0 {
            return Ok(None);
        }
        let (name, uid, gid) = CANDIDATE_USERS
            .iter()
            .find_map(|name| lookup_user(name).map(|(uid, gid)| ((*name).to_owned(), uid, gid)))
            .ok_or_else(|| TestkitError::NoUnprivilegedUser {
                reason: "neither a `postgres` nor a `nobody` user exists".to_owned(),
            })?;
        let switch = if let Some(path) = find_tool("setpriv") {
            Switch::Setpriv(path)
        } else if let Some(path) = find_tool("runuser") {
            Switch::Runuser(path)
        } else {
            return Err(TestkitError::NoUnprivilegedUser {
                reason: "neither `setpriv` nor `runuser` was found".to_owned(),
            });
        };
        Ok(Some(Self {
            name,
            uid,
            gid,
            switch,
        }))
    }

    /// A command that runs `program` as this user.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match &self.switch {
            Switch::Setpriv(setpriv) => {
                let mut command = Command::new(setpriv);
                command
                    .arg(format!("--reuid={}", self.uid))
                    .arg(format!("--regid={}", self.gid))
                    .args(["--clear-groups", "--"])
                    .arg(program);
                command
            }
            Switch::Runuser(runuser) => {
                let mut command = Command::new(runuser);
                command.args(["-u", &self.name, "--"]).arg(program);
                command
            }
        }
    }
}

/// The effective user id of this process, from `/proc/self/status` (falling back to `id -u`).
pub(crate) fn effective_uid() -> Result<u32, TestkitError> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(uid) = parse_effective_uid(&status)
    {
        return Ok(uid);
    }
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| TestkitError::io("running `id -u` to find the effective user id", e))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            TestkitError::io(
                "finding the effective user id",
                std::io::Error::other("neither /proc/self/status nor `id -u` gave one"),
            )
        })
}

/// `Uid:` lists the real, effective, saved and filesystem ids.
fn parse_effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

/// Uid and primary gid of `name`, from `/etc/passwd` (falling back to `id`, which also sees NSS).
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd")
        && let Some(ids) = parse_passwd(&passwd, name)
    {
        return Some(ids);
    }
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, name]).output().ok()?;
        if !output.status.success() {
            return None;
        }
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn parse_passwd(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_absolute() && candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_effective_uid() {
        let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn reads_our_own_uid() {
        let uid = effective_uid().unwrap();
        let id = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(uid.to_string(), String::from_utf8_lossy(&id.stdout).trim());
    }

    #[test]
    fn parses_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(passwd, "postgres"), Some((101, 104)));
        assert_eq!(parse_passwd(passwd, "post"), None);
        assert_eq!(parse_passwd(passwd, "nobody"), None);
    }

    #[test]
    fn setpriv_command_line() {
        let user = ServerUser {
            name: "postgres".to_owned(),
            uid: 101,
            gid: 104,
            switch: Switch::Setpriv(PathBuf::from("/usr/bin/setpriv")),
        };
        let command = user.command(Path::new("/usr/lib/postgresql/15/bin/initdb"));
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(
            args,
            [
                "--reuid=101",
                "--regid=104",
                "--clear-groups",
                "--",
                "/usr/lib/postgresql/15/bin/initdb"
            ]
        );
    }
}
