//! The CNI environment: read through a seam (a map) and validated before anything
//! is touched. A missing or invalid variable is error 4 and names the variable.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::CniError;

/// The six CNI commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "GC" => Self::Gc,
            "STATUS" => Self::Status,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Gc => "GC",
            Self::Status => "STATUS",
            Self::Version => "VERSION",
        }
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// Empty for GC, STATUS and VERSION.
    pub container_id: String,
    /// `None` when not given (DEL may omit it) or not needed.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: String,
    /// Directories searched for delegated plugins (IPAM).
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads and validates the variables the command needs.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, CniError> {
        let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let raw = get("CNI_COMMAND");
        if raw.is_empty() {
            return Err(CniError::env(
                "CNI_COMMAND is not set: the runtime must set it to ADD, DEL, CHECK, GC, STATUS or VERSION",
            ));
        }
        let command = Command::parse(raw).ok_or_else(|| {
            CniError::env(format!(
                "CNI_COMMAND={raw:?} is not a CNI command: use ADD, DEL, CHECK, GC, STATUS or VERSION"
            ))
        })?;
        let path = std::env::split_paths(get("CNI_PATH"))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let mut env = Self {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: get("CNI_ARGS").to_owned(),
            path,
        };
        if command == Command::Version {
            // VERSION ignores everything else, including dummy values.
            return Ok(env);
        }
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            env.container_id = require(get, "CNI_CONTAINERID")?.to_owned();
            validate_container_id(&env.container_id)?;
            env.ifname = require(get, "CNI_IFNAME")?.to_owned();
            validate_ifname(&env.ifname)?;
            let netns = get("CNI_NETNS");
            if netns.is_empty() && command != Command::Del {
                return Err(missing("CNI_NETNS"));
            }
            env.netns = (!netns.is_empty()).then(|| PathBuf::from(netns));
        }
        if command == Command::Gc && env.path.is_empty() {
            return Err(missing("CNI_PATH"));
        }
        Ok(env)
    }
}

fn missing(var: &str) -> CniError {
    CniError::env(format!(
        "{var} is not set: the container runtime must pass it for this command"
    ))
}

fn require<'a>(get: impl Fn(&str) -> &'a str, var: &str) -> Result<&'a str, CniError> {
    let value = get(var);
    if value.is_empty() {
        Err(missing(var))
    } else {
        Ok(value)
    }
}

/// The longest CNI_CONTAINERID accepted. Runtimes use 64 characters (containerd,
/// CRI-O, podman) or a little more (`ctr`: `<namespace>-<id>`); libcni itself keeps
/// results in files named after the id, which cannot be longer than 255 bytes.
pub const MAX_CONTAINER_ID_LEN: usize = 256;

/// `^[A-Za-z0-9][A-Za-z0-9_.-]*$`, as libcni validates container ids and network names.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.len() > MAX_CONTAINER_ID_LEN {
        let head: String = id.chars().take(32).collect();
        return Err(CniError::env(format!(
            "CNI_CONTAINERID is {} characters long ({head}...); at most {MAX_CONTAINER_ID_LEN} are accepted: \
             the runtime must pass the container's id",
            id.len()
        )));
    }
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(CniError::env(format!(
            "CNI_CONTAINERID={id:?} is invalid: it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
        )))
    }
}

/// Interface names: 1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(CniError::env(format!(
            "CNI_IFNAME={name:?} is not a valid interface name: use 1 to 15 characters without '/', ':' or spaces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn full(cmd: &str) -> Vec<(&str, &str)> {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]
    }

    #[test]
    fn add_needs_each_variable_and_names_it() {
        for var in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let v: Vec<_> = full("ADD").into_iter().filter(|(k, _)| *k != var).collect();
            let err = CniEnv::from_vars(&vars(&v)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnv, "{var}");
            assert!(
                err.msg.contains(var),
                "message {:?} should name {var}",
                err.msg
            );
        }
    }

    #[test]
    fn del_may_omit_netns() {
        let v: Vec<_> = full("DEL")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let env = CniEnv::from_vars(&vars(&v)).unwrap();
        assert_eq!(env.netns, None);
        let mut v = full("DEL");
        v[2] = ("CNI_NETNS", "");
        assert_eq!(CniEnv::from_vars(&vars(&v)).unwrap().netns, None);
    }

    #[test]
    fn version_ignores_dummy_values() {
        let env = CniEnv::from_vars(&vars(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_PATH", "dummy"),
        ]))
        .unwrap();
        assert_eq!(env.command, Command::Version);
    }

    #[test]
    fn gc_needs_path_status_does_not() {
        let err = CniEnv::from_vars(&vars(&[("CNI_COMMAND", "GC")])).unwrap_err();
        assert!(err.msg.contains("CNI_PATH"));
        assert!(CniEnv::from_vars(&vars(&[("CNI_COMMAND", "STATUS")])).is_ok());
    }

    #[test]
    fn container_ids_have_a_length_limit() {
        let longest = "a".repeat(MAX_CONTAINER_ID_LEN);
        let mut v = full("ADD");
        v[1] = ("CNI_CONTAINERID", &longest);
        assert!(CniEnv::from_vars(&vars(&v)).is_ok());
        let too_long = "a".repeat(5000);
        for cmd in ["ADD", "DEL", "CHECK"] {
            let mut v = full(cmd);
            v[1] = ("CNI_CONTAINERID", &too_long);
            let err = CniEnv::from_vars(&vars(&v)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnv, "{cmd}");
            assert!(
                err.msg.contains("CNI_CONTAINERID")
                    && err.msg.contains("5000")
                    && err.msg.contains("256")
                    && err.msg.len() < 300,
                "{cmd}: {}",
                err.msg
            );
        }
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            ("CNI_COMMAND", "ATTACH"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_CONTAINERID", "a/b"),
            ("CNI_IFNAME", "a-very-long-interface"),
            ("CNI_IFNAME", "eth:0"),
            ("CNI_IFNAME", ".."),
            ("CNI_IFNAME", "eth 0"),
        ];
        for (var, value) in cases {
            let mut v = full("ADD");
            v.retain(|(k, _)| *k != var);
            v.push((var, value));
            let err = CniEnv::from_vars(&vars(&v)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnv);
            assert!(
                err.msg.contains(var) && err.msg.contains(value),
                "{:?}",
                err.msg
            );
        }
    }
}
