//! Kubernetes Events the simulated controllers record, as the real ones do (network I/O): the
//! reasons and messages `kubectl describe` shows for Deployments, ReplicaSets, DaemonSets and HPAs.
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};

/// Who records and about what.
pub struct Recorder {
    client: Client,
    component: &'static str,
}

impl Recorder {
    /// A recorder reporting as `component` (e.g. `deployment-controller`).
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component }
    }

    /// Records a Normal event about `object`; failures are logged and otherwise ignored, as
    /// client-go's recorder does.
    pub async fn normal<K>(&self, object: &K, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(object, "Normal", reason, message).await;
    }

    /// Records a Warning event about `object`.
    pub async fn warning<K>(&self, object: &K, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(object, "Warning", reason, message).await;
    }

    async fn record<K>(&self, object: &K, type_: &str, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = object.meta();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let now = super::util::time(Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", Timestamp::now().as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(K::kind(&()).into_owned()),
                name: Some(name),
                namespace: Some(namespace.clone()),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: None,
            }),
            reporting_component: Some(self.component.into()),
            reporting_instance: Some(String::new()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "cannot record event");
        }
    }
}
