//! Executes a [`Plan`]'s actions and records its status and events; does API I/O.
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;

use super::Error;
use super::observe::FINALIZER;
use super::plan::{Action, EventType, Plan};
use super::workload::{SCALE_TO_ZERO_SELECTOR, Workload};
use crate::api::webhook_type::WebhookType;
use crate::api::{Canary, TargetKind};
use crate::core::fields::{api_resource, apply_params};
use crate::notifier::Notifier;
use crate::router::TrafficRouter;
use crate::target::builders::KEDA_PAUSED_REPLICAS;
use crate::webhook::Webhooks;

pub use crate::core::FIELD_MANAGER;

/// What `act` needs.
pub struct Actuator<'a> {
    /// API client.
    pub client: &'a kube::Client,
    /// Event recorder.
    pub recorder: &'a Recorder,
    /// The canary's router.
    pub router: Arc<dyn TrafficRouter>,
    /// Webhooks.
    pub webhooks: Arc<dyn Webhooks>,
    /// Alerts.
    pub notifier: Arc<dyn Notifier>,
    /// The selector label and its value (to restore the apex Service).
    pub label: Option<(String, String)>,
    /// Objects this process applied, and the caches that show them.
    pub applied: Option<(&'a Applied, &'a super::observe::Stores)>,
    /// Set when an apply was held back: the reconcile then looks again shortly, in case the
    /// object was deleted rather than not yet cached.
    pub held_back: std::sync::atomic::AtomicBool,
}

/// What this process last applied to each generated object: a hash of the body and the
/// resourceVersion the server answered, with when. The caches show such a write a moment later;
/// a reconcile in between (woken by another cache, often the Canary's own status write) would
/// otherwise plan the same apply again, and an init would patch each Service twice.
#[derive(Default)]
pub struct Applied(
    std::sync::Mutex<std::collections::HashMap<u64, (u64, u64, std::time::Instant)>>,
);

/// How long an apply the caches have not shown yet holds back the same apply.
const APPLIED_TTL: std::time::Duration = std::time::Duration::from_secs(5);

fn hash_of<T: std::hash::Hash>(v: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl Applied {
    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (u64, u64, std::time::Instant)>>
    {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether applying `body` to the object `key` would repeat a write of ours that the cache
    /// (`cached_rv`: its resourceVersion there, `None` when not cached) has not caught up with:
    /// the same body, written less than [`APPLIED_TTL`] ago, and the cache older than what the
    /// server answered. A cache at or past our write, or a resourceVersion that is not a number,
    /// never holds an apply back.
    pub fn is_unseen_repeat(&self, key: u64, body: u64, cached_rv: Option<&str>) -> bool {
        let mut entries = self.entries();
        let Some((hash, rv, at)) = entries.get(&key).copied() else {
            return false;
        };
        let lagging = match cached_rv {
            None => true,
            Some(c) => c.parse::<u64>().is_ok_and(|c| c < rv),
        };
        if at.elapsed() > APPLIED_TTL || !lagging {
            entries.remove(&key);
            return false;
        }
        hash == body
    }

    /// Records an apply the server answered with `rv`.
    pub fn remember(&self, key: u64, body: u64, rv: Option<&str>) {
        let mut entries = self.entries();
        entries.retain(|_, (_, _, at)| at.elapsed() <= APPLIED_TTL);
        match rv.and_then(|r| r.parse::<u64>().ok()) {
            Some(rv) => {
                entries.insert(key, (body, rv, std::time::Instant::now()));
            }
            None => {
                entries.remove(&key);
            }
        }
    }
}

/// The resourceVersion of a generated object in the controller's caches.
fn cached_rv(stores: &super::observe::Stores, kind: &str, ns: &str, name: &str) -> Option<String> {
    use super::observe::cached_version as rv;
    match kind {
        "Service" => rv(&stores.services, ns, name),
        "ConfigMap" => rv(&stores.configmaps, ns, name),
        "Secret" => rv(&stores.secrets, ns, name),
        "HorizontalPodAutoscaler" => rv(&stores.hpas, ns, name),
        "Deployment" => rv(&stores.deployments, ns, name),
        "DaemonSet" => rv(&stores.daemonsets, ns, name),
        _ => None,
    }
}

impl Actuator<'_> {
    /// Runs the plan's actions in order, then writes the status. Stops at the first failure, so
    /// nothing after a failed step is done; the next reconcile plans again from what is live.
    /// Returns the Canary as the API server stored it when the status was written.
    pub async fn execute(&self, canary: &Canary, plan: &Plan) -> Result<Option<Canary>, Error> {
        for action in &plan.actions {
            self.run(canary, action).await?;
        }
        if let Some(status) = &plan.status {
            let api: Api<Canary> = Api::namespaced(self.client.clone(), &ns(canary));
            let patch = json!({
                "apiVersion": "flagger.app/v1beta1",
                "kind": "Canary",
                "metadata": {"name": canary.name_any()},
                "status": status,
            });
            let written = api
                .patch_status(&canary.name_any(), &apply_params(), &Patch::Apply(&patch))
                .await
                .map_err(Error::PatchStatus)?;
            return Ok(Some(written));
        }
        Ok(None)
    }

    async fn run(&self, canary: &Canary, action: &Action) -> Result<(), Error> {
        let ns = ns(canary);
        match action {
            Action::AddFinalizer | Action::RemoveFinalizer => {
                let mut finalizers: Vec<String> = canary
                    .finalizers()
                    .iter()
                    .filter(|f| *f != FINALIZER)
                    .cloned()
                    .collect();
                if matches!(action, Action::AddFinalizer) {
                    finalizers.push(FINALIZER.to_string());
                }
                let api: Api<Canary> = Api::namespaced(self.client.clone(), &ns);
                let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
                api.patch(
                    &canary.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(Error::PatchFinalizer)?;
            }
            Action::Apply(obj) => self.apply_json(&ns, obj).await?,
            Action::CreatePrimary(w) | Action::PromotePrimary(w) => {
                let obj = match w {
                    Workload::Deployment(d) => serde_json::to_value(d),
                    Workload::DaemonSet(d) => serde_json::to_value(d),
                    Workload::StatefulSet(s) => serde_json::to_value(s),
                }
                .map_err(Error::Encode)?;
                self.apply_json(&ns, &obj).await?;
            }
            Action::SetPrimaryRevision(rev) => {
                crate::router::knative::set_primary_revision(self.client, canary, rev).await?
            }
            Action::ScaleTarget(n) => self.scale_target(canary, &ns, *n).await?,
            Action::PauseTargetScaler => self.pause_scaled_object(canary, &ns, true).await?,
            Action::ResumeTargetScaler => self.pause_scaled_object(canary, &ns, false).await?,
            Action::ReconcileRouter => self.router.reconcile(canary).await?,
            Action::SetRoutes(r) => self.router.set_routes(canary, *r).await?,
            Action::FinalizeRouter => self.router.finalize(canary).await?,
            Action::RestoreApexService => {
                if let Some((key, value)) = &self.label {
                    let api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
                    let name = canary.spec.service_name();
                    // Orphan the apex so garbage collection keeps it, and select the target's pods.
                    let patch = json!({"metadata": {"ownerReferences": null}, "spec": {"selector": {key: value}}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(Error::Apply)?;
                }
            }
            Action::PostRollout(phase) => {
                let webhooks = self.webhooks.clone();
                let canary = canary.clone();
                let phase = Some(*phase);
                // Post-rollout hooks never block the canary; their failures are logged.
                tokio::spawn(async move {
                    if let Err(e) = webhooks.run(&canary, WebhookType::PostRollout, phase).await {
                        tracing::warn!(canary = canary.name_any(), "post-rollout hook failed: {e}");
                    }
                });
            }
            Action::Event(t, msg) => {
                let ev = Event {
                    type_: match t {
                        EventType::Normal => KubeEventType::Normal,
                        EventType::Warning => KubeEventType::Warning,
                    },
                    reason: "Synced".into(),
                    note: Some(msg.clone()),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                match t {
                    EventType::Normal => {
                        tracing::info!(canary = canary.name_any(), namespace = ns, "{msg}")
                    }
                    EventType::Warning => {
                        tracing::warn!(canary = canary.name_any(), namespace = ns, "{msg}")
                    }
                }
                // kube's Recorder folds every event with the same type, reason and action into
                // one series that keeps the *first* note, so a second Warning ("Halt … error-rate")
                // would be recorded as a repeat of the first. A recorder per event keeps each
                // note, as Flagger's events do.
                let recorder = Recorder::new(self.client.clone(), super::reporter());
                // An event that cannot be recorded must not stop the canary.
                if let Err(e) = recorder.publish(&ev, &canary.object_ref(&())).await {
                    tracing::warn!("cannot record event: {e}");
                }
                let webhooks = self.webhooks.clone();
                let (c, warning, msg) = (canary.clone(), *t == EventType::Warning, msg.clone());
                let phase = canary.status.as_ref().and_then(|s| s.phase);
                tokio::spawn(async move { webhooks.event(&c, phase, warning, &msg).await });
            }
            Action::Alert(sev, msg) => {
                // Notifications never block the analysis.
                let notifier = self.notifier.clone();
                let (canary, sev, msg) = (canary.clone(), *sev, msg.clone());
                tokio::spawn(async move { notifier.alert(&canary, sev, &msg).await });
            }
        }
        Ok(())
    }

    async fn apply_json(&self, ns: &str, obj: &Value) -> Result<(), Error> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ar = api_resource(api_version, kind);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let mut body = obj.clone();
        // Server-side apply bodies must not carry server-owned metadata.
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
                "generation",
            ] {
                meta.remove(key);
            }
        }
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        let key = hash_of(&(api_version, kind, ns, name));
        let body_hash = hash_of(&body.to_string());
        if let Some((applied, stores)) = self.applied {
            let cached = cached_rv(stores, kind, ns, name);
            if applied.is_unseen_repeat(key, body_hash, cached.as_deref()) {
                tracing::debug!(kind, name, "skipping an apply the cache has not shown yet");
                self.held_back
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
        }
        let written = api
            .patch(name, &apply_params(), &Patch::Apply(&body))
            .await
            .map_err(Error::Apply)?;
        if let Some((applied, _)) = self.applied {
            applied.remember(key, body_hash, written.metadata.resource_version.as_deref());
        }
        Ok(())
    }

    /// Pauses the target's KEDA ScaledObject at zero replicas while the canary is scaled to zero
    /// (`autoscaling.keda.sh/paused-replicas: "0"`, as Flagger does), and resumes it (annotation
    /// removed) when the canary scales up. A missing ScaledObject is left alone.
    async fn pause_scaled_object(
        &self,
        canary: &Canary,
        ns: &str,
        pause: bool,
    ) -> Result<(), Error> {
        let Some(a) = canary
            .spec
            .autoscaler_ref
            .as_ref()
            .filter(|a| a.kind == "ScaledObject")
        else {
            return Ok(());
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &super::observe::keda_resource());
        let value = if pause { json!("0") } else { Value::Null };
        let patch = json!({"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: value}}});
        match api
            .patch(&a.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(Error::Scale(e)),
        }
    }

    async fn scale_target(&self, canary: &Canary, ns: &str, replicas: i32) -> Result<(), Error> {
        let Some(t) = &canary.spec.target_ref else {
            return Ok(());
        };
        match TargetKind::of(t) {
            Some(TargetKind::DaemonSet) => {
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
                let value = if replicas == 0 {
                    json!("true")
                } else {
                    Value::Null
                };
                let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_SELECTOR: value}}}}});
                api.patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::Scale)?;
            }
            Some(TargetKind::Deployment) => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
                let patch = json!({"spec": {"replicas": replicas}});
                api.patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::Scale)?;
            }
            Some(TargetKind::StatefulSet) => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
                let patch = json!({"spec": {"replicas": replicas}});
                api.patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::Scale)?;
            }
            // Services and Knative Services have nothing to scale; plan never asks.
            Some(TargetKind::Service | TargetKind::KnativeService) | None => {}
        }
        Ok(())
    }
}

fn ns(canary: &Canary) -> String {
    canary.namespace().unwrap_or_default()
}
