//! Helpers shared by the simulated controllers: template hashing, generated names, int-or-percent
//! arithmetic, label matching and pod readiness (pure, no I/O apart from an entropy source for names).
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The label the Deployment controller adds to ReplicaSets and Pods to tell templates apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label the DaemonSet controller puts on its Pods (the hash of the template they run).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// The alphabet Kubernetes uses for generated names: no vowels (no accidental words) and no
/// look-alike characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Errors from the shared helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An int-or-percent field (maxSurge, maxUnavailable) held a string that is not `N%`.
    #[error("invalid int-or-percent value {0:?}")]
    InvalidIntOrPercent(String),
    /// A label selector could not be turned into a matcher.
    #[error("invalid label selector: {0}")]
    InvalidSelector(String),
}

/// Maps arbitrary text onto the safe alphabet, byte by byte, as `rand.SafeEncodeString` does.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// FNV-1a, 32 bits: the hash family Kubernetes uses for pod-template-hash.
fn fnv1a32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The `pod-template-hash` of a template: FNV-1a over its canonical form plus the collision count,
/// printed in decimal and safe-encoded. The digits differ from the Go controller's (which hashes a
/// Go-specific dump of the struct) but the shape, stability and collision handling are the same.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut value = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    strip_label(&mut value, POD_TEMPLATE_HASH);
    normalize(&mut value);
    let mut bytes = value.to_string().into_bytes();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    safe_encode(&fnv1a32(&bytes).to_string())
}

/// Removes `label` from a serialized template's `metadata.labels`.
fn strip_label(template: &mut serde_json::Value, label: &str) {
    if let Some(labels) = template
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(|l| l.as_object_mut())
    {
        labels.remove(label);
    }
}

/// Drops nulls, empty arrays and empty objects, so that "unset" and "empty" compare equal, the way
/// apimachinery's semantic equality treats nil and empty collections.
fn normalize(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for v in map.values_mut() {
                normalize(v);
            }
            map.retain(|_, v| !is_empty_value(v));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn is_empty_value(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A value's JSON with unset and empty fields dropped, for comparisons that must not depend on
/// how a server serializes "nothing".
pub fn canonical<T: serde::Serialize>(value: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    normalize(&mut v);
    v
}

/// Whether two pod templates are equal once the pod-template-hash label is ignored
/// (`EqualIgnoreHash` in the Deployment controller).
pub fn templates_equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let canon = |t: &PodTemplateSpec| {
        let mut v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
        strip_label(&mut v, POD_TEMPLATE_HASH);
        normalize(&mut v);
        v
    };
    canon(a) == canon(b)
}

/// A random 64-bit value from the standard library's per-process hash keys plus a counter; enough
/// for name suffixes, without pulling in an RNG crate.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(d.as_nanos());
    }
    hasher.finish()
}

/// Five random characters from the safe alphabet, as the API server appends for `generateName`.
pub fn random_suffix() -> String {
    let mut n = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHANUMS[(n % ALPHANUMS.len() as u64) as usize] as char;
            n /= ALPHANUMS.len() as u64;
            c
        })
        .collect()
}

/// Resolves an int-or-percent against `total`, rounding a percentage up or down
/// (`GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| Error::InvalidIntOrPercent(s.clone()))?;
            let product = pct * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value).map_err(|_| Error::InvalidIntOrPercent(s.clone()))
        }
    }
}

/// Whether `selector` selects `labels`. A missing selector selects nothing; an empty one everything.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, Error> {
    let Some(selector) = selector else {
        return Ok(false);
    };
    let sel =
        Selector::try_from(selector.clone()).map_err(|e| Error::InvalidSelector(e.to_string()))?;
    let empty = BTreeMap::new();
    Ok(sel.matches(labels.unwrap_or(&empty)))
}

/// Whether a plain map selector (Service, nodeSelector) selects `labels`.
pub fn map_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The owner reference a controller puts on what it creates (`NewControllerRef`).
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The UID of the object's controller, if it has one.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// A timestamp cut to whole seconds, the precision `metav1.Time` has on the wire; keeping it here
/// makes freshly computed statuses compare equal to ones read back from the server.
pub fn time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// `t + secs` seconds.
pub fn add_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(t)
}

/// The pod's condition of the given type.
pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether the pod's Ready condition is True (`IsPodReady`).
pub fn pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Whether the pod has been Ready for longer than `min_ready_seconds` (`IsPodAvailable`).
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(ready) = pod_condition(pod, "Ready").filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    ready
        .last_transition_time
        .as_ref()
        .is_some_and(|t| add_secs(t.0, i64::from(min_ready_seconds)) < now)
}

/// When a ready pod will become available, if that is still in the future.
pub fn pod_available_at(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Timestamp> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let ready = pod_condition(pod, "Ready").filter(|c| c.status == "True")?;
    let at = add_secs(
        ready.last_transition_time.as_ref()?.0,
        i64::from(min_ready_seconds) + 1,
    );
    (at > now).then_some(at)
}

/// Whether the pod is active: not finished and not being deleted (`FilterActivePods`).
pub fn pod_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !pod_terminal(pod)
}

/// Whether the pod has finished (phase Succeeded or Failed).
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the pod is being deleted but has not finished yet (counted in `terminatingReplicas`).
pub fn pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !pod_terminal(pod)
}

/// An `omitempty` integer as the Go API types serialize it: zero is left out.
pub fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(scaled_value(&pct, 3, true).ok(), Some(1));
        assert_eq!(scaled_value(&pct, 3, false).ok(), Some(0));
        assert_eq!(scaled_value(&pct, 10, true).ok(), Some(3));
        assert_eq!(scaled_value(&pct, 10, false).ok(), Some(2));
        assert_eq!(scaled_value(&IntOrString::Int(2), 10, false).ok(), Some(2));
        assert!(scaled_value(&IntOrString::String("x".into()), 10, false).is_err());
    }

    #[test]
    fn template_hash_ignores_its_own_label_and_uses_the_safe_alphabet() {
        let mut t = PodTemplateSpec::default();
        let h1 = template_hash(&t, None);
        t.metadata.get_or_insert_with(Default::default).labels =
            Some(BTreeMap::from([(POD_TEMPLATE_HASH.into(), "abc".into())]));
        assert_eq!(template_hash(&t, None), h1);
        assert_ne!(template_hash(&t, Some(1)), h1);
        assert!(h1.bytes().all(|b| ALPHANUMS.contains(&b)));
    }

    #[test]
    fn unset_and_empty_fields_compare_equal() {
        let a = PodTemplateSpec::default();
        let mut b = PodTemplateSpec::default();
        b.metadata.get_or_insert_with(Default::default).labels = Some(BTreeMap::new());
        assert!(templates_equal_ignoring_hash(&a, &b));
        b.metadata.get_or_insert_with(Default::default).labels =
            Some(BTreeMap::from([("app".into(), "x".into())]));
        assert!(!templates_equal_ignoring_hash(&a, &b));
    }

    #[test]
    fn random_suffixes_have_five_safe_characters_and_vary() {
        let a = random_suffix();
        let b = random_suffix();
        assert_eq!(a.len(), 5);
        assert!(a.bytes().all(|c| ALPHANUMS.contains(&c)));
        assert_ne!(a, b);
    }
}
