//! The plugin's logs: stderr by default or the file named by `logFile`, never stdout
//! (stdout is the CNI protocol). The level comes from `logLevel` or
//! `ZONEWARDEN_LOG_LEVEL` and defaults to `info`.

use std::fs::OpenOptions;
use std::path::Path;

use tracing_subscriber::EnvFilter;

pub fn init(level: Option<&str>, file: Option<&Path>) {
    let level = level.unwrap_or("info");
    // The level applies to zonewarden's own events; the gRPC stack stays at warn.
    let filter = EnvFilter::try_new(format!(
        "warn,zonewarden_cni={level},zonewarden_proto={level}"
    ))
    .unwrap_or_else(|_| EnvFilter::new("warn,zonewarden_cni=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let opened = file.map(|path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| (path.to_path_buf(), e))
    });
    match opened {
        Some(Ok(f)) => {
            let _ = builder.with_writer(std::sync::Mutex::new(f)).try_init();
        }
        Some(Err((path, e))) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            tracing::warn!(path = %path.display(), err = %e, "cannot open logFile; logging to stderr");
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
}
