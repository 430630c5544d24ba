//! Traffic providers (`spec.provider`, `--mesh-provider`) and what each can do; pure.
use std::fmt;
use std::str::FromStr;

/// The provider strings the Canary schema accepts, as in Flagger's CRD enum.
pub const PROVIDER_NAMES: [&str; 19] = [
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kubernetes",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
];

/// A traffic provider, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Apache APISIX (ApisixRoute).
    Apisix,
    /// AWS App Mesh with the legacy `appmesh.k8s.aws/v1beta1` API (`appmesh`).
    AppMesh,
    /// AWS App Mesh with the `appmesh.k8s.aws/v1beta2` API (`appmesh:v1beta2`).
    AppMeshV1beta2,
    /// Contour (HTTPProxy).
    Contour,
    /// Gateway API HTTPRoute `gateway.networking.k8s.io/v1`.
    GatewayApiV1,
    /// Gateway API HTTPRoute `gateway.networking.k8s.io/v1beta1`.
    GatewayApiV1beta1,
    /// Gloo Edge (Upstream + RouteTable).
    Gloo,
    /// Istio (VirtualService + DestinationRules).
    Istio,
    /// Knative Serving (the Service's traffic block).
    Knative,
    /// Plain Kubernetes Services: blue/green only.
    Kubernetes,
    /// Kuma (TrafficRoute).
    Kuma,
    /// Linkerd (SMI TrafficSplit).
    Linkerd,
    /// NGINX ingress (canary Ingress annotations).
    Nginx,
    /// Open Service Mesh (SMI TrafficSplit v1alpha2).
    Osm,
    /// Skipper ingress.
    Skipper,
    /// SMI TrafficSplit at the given API version (1, 2 or 3 for v1alpha1..3); `istio` for the
    /// `smi:<version>:istio` flavour, which annotates the split with the Istio gateways.
    Smi {
        /// 1, 2 or 3 for v1alpha1..3.
        version: u8,
        /// Whether the mesh suffix is `:istio`.
        istio: bool,
    },
    /// Traefik (TraefikService).
    Traefik,
}

/// An unknown or unsupported provider string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown provider {given:?}{hint}; expected one of: {}", PROVIDER_NAMES.join(", "))]
pub struct UnknownProvider {
    /// What was given.
    pub given: String,
    /// A hint for near misses, starting with "; " or empty.
    pub hint: &'static str,
}

impl FromStr for Provider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `smi:v1alpha3:istio`-style mesh suffixes are accepted for SMI, as Flagger's flag does.
        let smi = |v: &str| -> Option<Provider> {
            let mut parts = v.splitn(2, ':');
            let version = match parts.next() {
                Some("v1alpha1") => 1,
                Some("v1alpha2") => 2,
                Some("v1alpha3") => 3,
                _ => return None,
            };
            let istio = parts.next() == Some("istio");
            Some(Provider::Smi { version, istio })
        };
        Ok(match s {
            "apisix" => Self::Apisix,
            "appmesh" => Self::AppMesh,
            "appmesh:v1beta2" => Self::AppMeshV1beta2,
            "contour" => Self::Contour,
            "gatewayapi:v1" => Self::GatewayApiV1,
            "gatewayapi:v1beta1" => Self::GatewayApiV1beta1,
            "gloo" => Self::Gloo,
            "istio" => Self::Istio,
            "knative" => Self::Knative,
            "kubernetes" => Self::Kubernetes,
            "kuma" => Self::Kuma,
            "linkerd" => Self::Linkerd,
            "nginx" => Self::Nginx,
            "osm" => Self::Osm,
            "skipper" => Self::Skipper,
            "traefik" => Self::Traefik,
            other => {
                if let Some(p) = other.strip_prefix("smi:").and_then(smi) {
                    return Ok(p);
                }
                let hint = if other == "gatewayapi" {
                    // Flagger silently routes a bare `gatewayapi` through Istio; we refuse instead.
                    "; name the HTTPRoute version: gatewayapi:v1 or gatewayapi:v1beta1"
                } else {
                    ""
                };
                return Err(UnknownProvider {
                    given: other.to_string(),
                    hint,
                });
            }
        })
    }
}

impl Provider {
    /// The canonical provider string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apisix => "apisix",
            Self::AppMesh => "appmesh",
            Self::AppMeshV1beta2 => "appmesh:v1beta2",
            Self::Contour => "contour",
            Self::GatewayApiV1 => "gatewayapi:v1",
            Self::GatewayApiV1beta1 => "gatewayapi:v1beta1",
            Self::Gloo => "gloo",
            Self::Istio => "istio",
            Self::Knative => "knative",
            Self::Kubernetes => "kubernetes",
            Self::Kuma => "kuma",
            Self::Linkerd => "linkerd",
            Self::Nginx => "nginx",
            Self::Osm => "osm",
            Self::Skipper => "skipper",
            Self::Smi {
                version: 1,
                istio: false,
            } => "smi:v1alpha1",
            Self::Smi {
                version: 2,
                istio: false,
            } => "smi:v1alpha2",
            Self::Smi { istio: false, .. } => "smi:v1alpha3",
            Self::Smi {
                version: 1,
                istio: true,
            } => "smi:v1alpha1:istio",
            Self::Smi {
                version: 2,
                istio: true,
            } => "smi:v1alpha2:istio",
            Self::Smi { istio: true, .. } => "smi:v1alpha3:istio",
            Self::Traefik => "traefik",
        }
    }

    /// True for both App Mesh API versions.
    pub fn is_app_mesh(self) -> bool {
        matches!(self, Self::AppMesh | Self::AppMeshV1beta2)
    }

    /// True for both Gateway API versions.
    pub fn is_gateway_api(self) -> bool {
        matches!(self, Self::GatewayApiV1 | Self::GatewayApiV1beta1)
    }

    /// Whether the provider can shift traffic in weighted steps (everything but `kubernetes`).
    pub fn supports_weights(self) -> bool {
        self != Self::Kubernetes
    }

    /// Whether the provider can route by A/B `match` conditions.
    pub fn supports_ab_testing(self) -> bool {
        matches!(
            self,
            Self::Istio
                | Self::GatewayApiV1
                | Self::GatewayApiV1beta1
                | Self::AppMesh
                | Self::AppMeshV1beta2
                | Self::Contour
                | Self::Gloo
                | Self::Nginx
        )
    }

    /// Whether the provider can mirror traffic to the canary.
    pub fn supports_mirroring(self) -> bool {
        matches!(
            self,
            Self::Istio | Self::GatewayApiV1 | Self::GatewayApiV1beta1
        )
    }

    /// Whether the provider can pin sessions with cookies.
    pub fn supports_session_affinity(self) -> bool {
        matches!(
            self,
            Self::Istio | Self::GatewayApiV1 | Self::GatewayApiV1beta1
        )
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_provider_name_parses() {
        for name in PROVIDER_NAMES {
            let p: Provider = name.parse().unwrap();
            assert_eq!(p.as_str(), name);
        }
    }

    #[test]
    fn bare_gatewayapi_is_refused_with_a_hint() {
        let err = "gatewayapi".parse::<Provider>().unwrap_err();
        assert!(
            err.to_string()
                .contains("gatewayapi:v1 or gatewayapi:v1beta1")
        );
    }

    #[test]
    fn smi_accepts_a_mesh_suffix() {
        assert_eq!(
            "smi:v1alpha3:istio".parse(),
            Ok(Provider::Smi {
                version: 3,
                istio: true
            })
        );
        assert_eq!(
            "smi:v1alpha1:linkerd".parse(),
            Ok(Provider::Smi {
                version: 1,
                istio: false
            })
        );
    }
}
