//! SMI routers (`linkerd`, `smi:v1alpha1|2|3`, `osm`): the TrafficSplit `<svc>`.
//!
//! Pure builders compute the TrafficSplit Flagger writes; [`routing_object`] applies and reads it
//! (API I/O).
use serde_json::{Value, json};

use super::routing::RoutingObject;
use super::{Error, Meta};
use crate::api::Canary;
use crate::core::Routes;

/// Which TrafficSplit flavour to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Linkerd: `split.smi-spec.io/v1alpha1`.
    Linkerd,
    /// SMI at API version v1alpha1, v1alpha2 or v1alpha3 (`osm` is v1alpha2); `istio` for
    /// `smi:<version>:istio`.
    Smi {
        /// 1, 2 or 3.
        version: u8,
        /// Whether the mesh is Istio (through its SMI adapter).
        istio: bool,
    },
}

/// The annotation Istio's SMI adapter reads to attach the VirtualService it generates to
/// gateways (`service.gateways` as a JSON list).
pub const ISTIO_GATEWAYS_ANNOTATION: &str =
    "VirtualService.v1alpha3.networking.istio.io/spec.gateways";

impl Flavour {
    /// The apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Linkerd | Self::Smi { version: 1, .. } => "split.smi-spec.io/v1alpha1",
            Self::Smi { version: 2, .. } => "split.smi-spec.io/v1alpha2",
            Self::Smi { .. } => "split.smi-spec.io/v1alpha3",
        }
    }

    /// v1alpha1 weights are quantities (strings), later versions integers.
    fn weight(self, w: i32) -> Value {
        if self.api_version().ends_with("v1alpha1") {
            json!(w.to_string())
        } else {
            json!(w)
        }
    }
}

/// The TrafficSplit for a split: root service `hosts[0]` or the apex, canary backend first.
pub fn traffic_split(
    canary: &Canary,
    flavour: Flavour,
    routes: Routes,
    live: Option<&Value>,
) -> Value {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let root = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.hosts.as_ref())
        .and_then(|h| h.first().cloned())
        .unwrap_or_else(|| apex.clone());
    let mut meta = super::owned_metadata(canary, &apex, Meta::Bare, super::owned_by(canary, live));
    let gateways = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.gateways.clone())
        .unwrap_or_default();
    if matches!(flavour, Flavour::Smi { istio: true, .. }) && !gateways.is_empty() {
        meta["annotations"] = json!({ISTIO_GATEWAYS_ANNOTATION: json!(gateways).to_string()});
    }
    json!({
        "apiVersion": flavour.api_version(),
        "kind": "TrafficSplit",
        "metadata": meta,
        "spec": {
            "service": root,
            "backends": [
                {"service": canary_svc, "weight": flavour.weight(routes.canary)},
                {"service": primary, "weight": flavour.weight(routes.primary)},
            ],
        },
    })
}

/// Reads the split from a TrafficSplit.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let mut routes = Routes::split(0, 0);
    for b in live["spec"]["backends"].as_array().into_iter().flatten() {
        if b["service"] == json!(primary) {
            routes.primary = super::weight_of(b.get("weight"));
        } else if b["service"] == json!(canary_svc) {
            routes.canary = super::weight_of(b.get("weight"));
        }
    }
    super::non_zero(routes, &format!("TrafficSplit {apex}"))
}

/// The SMI family's routing object (Linkerd, OSM, SMI): the TrafficSplit `<svc>` of a
/// [`Flavour`].
pub fn routing_object(flavour: Flavour) -> RoutingObject {
    let build = move |c: &Canary, routes, live: Option<&Value>, _: &Value| {
        Ok(traffic_split(c, flavour, routes, live))
    };
    let resource = super::resource(flavour.api_version(), "TrafficSplit");
    RoutingObject::new(resource, read_routes, build)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::INITIAL;
    use crate::router::testing::canary;
    use crate::router::testing::split;

    #[test]
    fn linkerd_split_uses_quantities_and_lists_the_canary_first() {
        let c = canary("linkerd", json!({}));
        let ts = traffic_split(&c, Flavour::Linkerd, split(90, 10), None);
        assert_eq!(ts["apiVersion"], "split.smi-spec.io/v1alpha1");
        assert_eq!(
            ts["spec"],
            json!({"service": "podinfo", "backends": [
            {"service": "podinfo-canary", "weight": "10"},
            {"service": "podinfo-primary", "weight": "90"}]})
        );
        assert_eq!(ts["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    }

    #[test]
    fn smi_v1alpha3_split_uses_integers_and_the_first_host_as_root() {
        let c = canary(
            "smi:v1alpha3",
            json!({"service": {"hosts": ["app.example.com"]}}),
        );
        let ts = traffic_split(
            &c,
            Flavour::Smi {
                version: 3,
                istio: false,
            },
            split(40, 60),
            None,
        );
        assert_eq!(ts["apiVersion"], "split.smi-spec.io/v1alpha3");
        assert_eq!(ts["spec"]["service"], "app.example.com");
        assert_eq!(ts["spec"]["backends"][0]["weight"], 60);
        assert_eq!(read_routes(&c, &ts).unwrap(), split(40, 60));
    }

    #[test]
    fn smi_on_istio_annotates_the_split_with_the_gateways() {
        let c = canary(
            "smi:v1alpha3:istio",
            json!({"service": {"gateways": ["public-gateway", "mesh"]}}),
        );
        let istio = Flavour::Smi {
            version: 3,
            istio: true,
        };
        let ts = traffic_split(&c, istio, INITIAL, None);
        assert_eq!(
            ts["metadata"]["annotations"][ISTIO_GATEWAYS_ANNOTATION],
            r#"["public-gateway","mesh"]"#
        );
        let plain = Flavour::Smi {
            version: 3,
            istio: false,
        };
        let ts = traffic_split(&c, plain, INITIAL, None);
        assert!(ts["metadata"].get("annotations").is_none());
    }

    #[test]
    fn quantity_weights_read_back_including_milli_units() {
        let c = canary("linkerd", json!({}));
        let live = json!({"spec": {"backends": [
            {"service": "podinfo-canary", "weight": "250m"},
            {"service": "podinfo-primary", "weight": "99"}]}});
        assert_eq!(read_routes(&c, &live).unwrap(), split(99, 0));
    }

    #[test]
    fn a_split_without_weights_is_an_error() {
        let c = canary("osm", json!({}));
        assert!(read_routes(&c, &json!({"spec": {"backends": []}})).is_err());
    }
}
