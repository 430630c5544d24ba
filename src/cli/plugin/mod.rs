//! The `kubectl serin` plugin: `get`, `status`, and the manual requests (`promote`, `abort`,
//! `retry`, `pause`, `resume`) against a real cluster; does API and terminal I/O.
//!
//! The binary is also installed as `kubectl-serin` (a symlink or a copy on PATH), so that
//! `kubectl serin get` runs `serin get`. The requests are annotations the controller honours
//! (`serin.dev/request: <verb>@<revision>`); the plugin never writes the status.
use std::path::PathBuf;
use std::process::ExitCode;

pub mod get;
pub mod request;
pub mod status;

/// Whether the binary runs as the kubectl plugin (`argv[0]`'s file name is `kubectl-serin`).
pub fn invoked_as_plugin(argv0: &str) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let name = name.strip_suffix(".exe").unwrap_or(name);
    name == "kubectl-serin"
}

/// The standard kube flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// Exit codes shared by the plugin's commands.
pub mod exit {
    /// The controller did not apply the request (Ignored or Rejected), or there is nothing to
    /// ask about yet.
    pub const NOT_APPLIED: u8 = 1;
    /// No usable cluster: no kubeconfig, an unknown context, or the API server cannot be reached.
    pub const NO_CLUSTER: u8 = 3;
    /// The Canary does not exist (or the flagger.app CRDs are not installed).
    pub const NOT_FOUND: u8 = 4;
    /// The API server refused the request (forbidden, invalid, conflict).
    pub const REFUSED: u8 = 5;
    /// The controller did not acknowledge the request in time (is it running?).
    pub const NO_ACK: u8 = 6;
}

/// Errors of the plugin's commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig cannot be read or has no usable context.
    #[error("no cluster: {0}")]
    Config(String),
    /// The API server cannot be reached.
    #[error("no cluster: cannot reach the API server: {0}")]
    Unreachable(String),
    /// The Canary does not exist.
    #[error("canary {name} not found in namespace {namespace}")]
    NotFound {
        /// Namespace looked in.
        namespace: String,
        /// Canary name.
        name: String,
    },
    /// The API server answered with an error.
    #[error("the API server refused the request: {0}")]
    Refused(String),
    /// The Canary has no revision to make a request about yet.
    #[error("{0}")]
    NothingToAsk(String),
    /// The controller ignored or rejected the request.
    #[error("the controller did not apply the request: {0}")]
    NotApplied(String),
    /// No acknowledgement in time.
    #[error(
        "no acknowledgement from the controller after {0}s (is it running and watching this namespace?); the request stays on the Canary and will be handled when it runs"
    )]
    NoAck(u64),
    /// The terminal or the runtime failed.
    #[error("{0}")]
    Io(String),
    /// The reader of stdout went away (`serin get | head`): not an error, the command stops.
    #[error("output closed")]
    OutputClosed,
}

/// Writes to stdout through [`crate::cli::output`], so a closed pipe stops the command quietly.
pub fn out(text: &str) -> Result<(), Error> {
    crate::cli::output::write_stdout(text).map_err(|e| {
        if crate::cli::output::is_closed_pipe(&e) {
            Error::OutputClosed
        } else {
            Error::Io(format!("cannot write the output: {e}"))
        }
    })
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Unreachable(_) => exit::NO_CLUSTER,
            Self::NotFound { .. } => exit::NOT_FOUND,
            Self::Refused(_) => exit::REFUSED,
            Self::NothingToAsk(_) | Self::NotApplied(_) | Self::Io(_) => exit::NOT_APPLIED,
            Self::NoAck(_) => exit::NO_ACK,
            Self::OutputClosed => 0,
        }
    }

    /// Classifies a kube error met while reading or writing `namespace/name`.
    pub fn from_kube(e: kube::Error, namespace: &str, name: &str) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 404 => Self::NotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            kube::Error::Api(s) => Self::Refused(format!("{} ({})", s.message, s.code)),
            other => Self::Unreachable(other.to_string()),
        }
    }
}

/// A client for the flags, and the namespace they select.
pub async fn client(args: &KubeArgs) -> Result<(kube::Client, String), Error> {
    crate::install_crypto_provider();
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let mut config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("kubectl-serin/", env!("CARGO_PKG_VERSION"))),
    ));
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok((client, namespace))
}

/// Runs `f` on a fresh runtime, printing its error and mapping it to the exit code.
pub fn block_on<F>(f: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("error: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) | Err(Error::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Whether to colour the output: stdout is a terminal and `NO_COLOR` is not set.
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `42s`, `3m20s`, `17m`, `5h`, `3d`: an age as kubectl prints it.
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_recognised_by_its_file_name_only() {
        assert!(invoked_as_plugin("kubectl-serin"));
        assert!(invoked_as_plugin("/usr/local/bin/kubectl-serin"));
        assert!(invoked_as_plugin("kubectl-serin.exe"));
        assert!(!invoked_as_plugin("/usr/local/bin/serin"));
        assert!(!invoked_as_plugin("kubectl-serin-old"));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let s = chrono::Duration::seconds;
        assert_eq!(age(s(42)), "42s");
        assert_eq!(age(s(200)), "3m20s");
        assert_eq!(age(s(1_020)), "17m");
        assert_eq!(age(s(5 * 3600 + 10)), "5h");
        assert_eq!(age(s(3 * 86_400)), "3d");
        assert_eq!(age(s(-5)), "0s");
    }

    #[test]
    fn api_errors_map_to_not_found_refused_or_unreachable() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "nope".into(),
                ..Default::default()
            }))
        };
        assert_eq!(
            Error::from_kube(api(404), "test", "podinfo").exit_code(),
            exit::NOT_FOUND
        );
        assert_eq!(
            Error::from_kube(api(403), "test", "podinfo").exit_code(),
            exit::REFUSED
        );
        assert!(
            Error::from_kube(api(404), "test", "podinfo")
                .to_string()
                .contains("canary podinfo not found in namespace test")
        );
    }
}
