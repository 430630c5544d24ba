//! `serin promote|abort|retry|pause|resume NAME`: writes the `serin.dev/request` annotation
//! with a merge patch under the field manager `kubectl-serin`, then waits for the controller's
//! acknowledgement in `status.lastRequest` (API I/O).
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

use super::{Error, KubeArgs};
use crate::api::Canary;
use crate::core::plan::requests::{
    Outcome, PLUGIN_FIELD_MANAGER, REQUEST_ANNOTATION, Request, Verb,
};

/// Arguments of a request command.
#[derive(Debug, Clone, clap::Args)]
pub struct RequestArgs {
    /// The Canary.
    pub name: String,
    /// The kube flags.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Return once the request is written, without waiting for the controller.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the controller's acknowledgement.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// The request for the Canary as it is now: about the revision in `status.lastAppliedSpec`.
pub fn request_for(verb: Verb, canary: &Canary) -> Result<Request, Error> {
    let status = canary.status.clone().unwrap_or_default();
    let revision = status
        .last_applied_spec
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::NothingToAsk(format!(
                "canary {} has no revision yet (phase {}); is the controller running?",
                canary.metadata.name.as_deref().unwrap_or_default(),
                status.phase.map_or("none", |p| p.as_str())
            ))
        })?;
    Ok(Request { verb, revision })
}

/// What the status says about `value`: `None` while it is not acknowledged (or still Pending
/// when `final_only`).
pub fn acknowledgement(
    canary: &Canary,
    value: &str,
    final_only: bool,
) -> Option<(Outcome, String)> {
    let last = canary.status.as_ref()?.last_request.as_ref()?;
    if last.request != value {
        return None;
    }
    let outcome = Outcome::parse(&last.outcome)?;
    if final_only && outcome == Outcome::Pending {
        return None;
    }
    Some((outcome, last.message.clone().unwrap_or_default()))
}

/// Runs one request command.
pub fn run(verb: Verb, args: RequestArgs) -> ExitCode {
    super::block_on(async move {
        let (client, namespace) = super::client(&args.kube).await?;
        let api: Api<Canary> = Api::namespaced(client, &namespace);
        let name = args.name.as_str();
        let canary = api
            .get(name)
            .await
            .map_err(|e| Error::from_kube(e, &namespace, name))?;
        let value = request_for(verb, &canary)?.annotation();
        let patch = json!({"metadata": {"annotations": {REQUEST_ANNOTATION: value}}});
        let params = PatchParams {
            field_manager: Some(PLUGIN_FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::from_kube(e, &namespace, name))?;
        super::out(&format!(
            "{verb} requested for {namespace}/{name}: {REQUEST_ANNOTATION}={value}\n"
        ))?;
        if args.no_wait {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
        let mut pending_shown = false;
        loop {
            let canary = api
                .get(name)
                .await
                .map_err(|e| Error::from_kube(e, &namespace, name))?;
            match acknowledgement(&canary, &value, false) {
                Some((Outcome::Applied, msg)) => {
                    super::out(&format!("controller: Applied: {msg}\n"))?;
                    return Ok(());
                }
                Some((Outcome::Pending, msg)) if !pending_shown => {
                    super::out(&format!("controller: Pending: {msg}\n"))?;
                    pending_shown = true;
                }
                Some((Outcome::Pending, _)) => {}
                Some((outcome, msg)) => {
                    return Err(Error::NotApplied(format!("{}: {msg}", outcome.as_str())));
                }
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                if pending_shown {
                    // Accepted: the controller applies it once the canary is ready.
                    return Ok(());
                }
                return Err(Error::NoAck(args.timeout));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::{CanaryStatus, RequestStatus};

    fn canary(applied: Option<&str>, last: Option<(&str, &str)>) -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.status = Some(CanaryStatus {
            last_applied_spec: applied.map(String::from),
            last_request: last.map(|(r, o)| RequestStatus {
                request: r.into(),
                outcome: o.into(),
                message: Some("why".into()),
                observed_at: None,
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn a_request_is_about_the_revision_in_last_applied_spec() {
        let r = request_for(Verb::Promote, &canary(Some("v1:abc"), None));
        assert_eq!(
            r.ok().map(|r| r.annotation()).as_deref(),
            Some("promote@v1:abc")
        );
        let none = request_for(Verb::Abort, &canary(None, None));
        assert!(matches!(none, Err(Error::NothingToAsk(m)) if m.contains("no revision yet")));
    }

    #[test]
    fn only_the_acknowledgement_of_this_request_counts() {
        let c = canary(Some("v1:abc"), Some(("pause@v1:abc", "Applied")));
        assert_eq!(acknowledgement(&c, "resume@v1:abc", false), None);
        assert_eq!(
            acknowledgement(&c, "pause@v1:abc", false),
            Some((Outcome::Applied, "why".into()))
        );
        let pending = canary(Some("v1:abc"), Some(("promote@v1:abc", "Pending")));
        assert_eq!(acknowledgement(&pending, "promote@v1:abc", true), None);
        assert_eq!(
            acknowledgement(&pending, "promote@v1:abc", false).map(|a| a.0),
            Some(Outcome::Pending)
        );
    }
}
