//! `serin manifests`: prints the install bundle, or writes every generated file of `deploy/`
//! and `charts/serin/` (stdout and file I/O).
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `serin manifests`.
#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// Write every generated file (deploy/, charts/serin/templates/) under this repository root
    /// instead of printing `deploy/install.yaml`.
    #[arg(long, value_name = "ROOT")]
    pub write: Option<PathBuf>,
    /// Print the load tester's Deployment and Service instead of the controller bundle.
    #[arg(long, conflicts_with = "write")]
    pub loadtester: bool,
}

/// Runs `serin manifests`.
pub fn run(args: ManifestsArgs) -> ExitCode {
    match render(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(super::output::is_closed_pipe) =>
        {
            // The reader has gone (`serin manifests | head`): see `cli::output`.
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin manifests: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn render(args: &ManifestsArgs) -> anyhow::Result<()> {
    let files = crate::install::files()?;
    if let Some(root) = &args.write {
        for (path, text) in &files {
            let path = root.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            crate::cli::output::stderr_line(&format!("wrote {}", path.display()));
        }
        return Ok(());
    }
    let want: &[&str] = if args.loadtester {
        &[
            "deploy/loadtester/deployment.yaml",
            "deploy/loadtester/service.yaml",
        ]
    } else {
        &["deploy/install.yaml"]
    };
    for (_, text) in files.iter().filter(|(p, _)| want.contains(&p.as_str())) {
        super::output::write_stdout(text)?;
    }
    Ok(())
}
