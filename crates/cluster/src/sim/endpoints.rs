//! The simulated endpoints controller's decisions (pure, no I/O): the Endpoints object a Service
//! with a selector should have, given the Pods in its namespace.
use super::util::{map_selector_matches, pod_ready, pod_terminal};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label the endpoints controller puts on the Endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// A subset's ports as (name, number, protocol): pods exposing the same list share a subset.
type PortKey = Vec<(String, i32, String)>;

/// The Endpoints `service` should have; `None` when the controller leaves it alone (no selector,
/// ExternalName).
pub fn desired(service: &Service, pods: &[Pod]) -> Option<Endpoints> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.clone().unwrap_or_default();
    let service_name = service.metadata.name.clone().unwrap_or_default();
    // Pods grouped by the exact port list they expose, as the real controller repacks subsets.
    let mut subsets: BTreeMap<PortKey, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        if !map_selector_matches(selector, pod.metadata.labels.as_ref()) || pod_terminal(pod) {
            continue;
        }
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() && !publish_not_ready {
            continue;
        }
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            hostname: pod
                .spec
                .as_ref()
                .filter(|s| s.subdomain.as_deref() == Some(service_name.as_str()))
                .and_then(|s| s.hostname.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let mut key: PortKey = Vec::new();
        for port in &ports {
            if let Some(number) = resolve_port(pod, port) {
                key.push((
                    port.name.clone().unwrap_or_default(),
                    number,
                    port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ));
            }
        }
        if key.is_empty() && !(ports.is_empty() && headless) {
            continue;
        }
        key.sort();
        let entry = subsets.entry(key).or_default();
        if publish_not_ready || pod_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_iter()
        .map(|(ports_key, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            let endpoint_ports: Vec<EndpointPort> = ports_key
                .into_iter()
                .map(|(name, port, protocol)| {
                    let app_protocol = ports
                        .iter()
                        .find(|p| p.name.clone().unwrap_or_default() == name)
                        .and_then(|p| p.app_protocol.clone());
                    EndpointPort {
                        name: (!name.is_empty()).then_some(name),
                        port,
                        protocol: Some(protocol),
                        app_protocol,
                    }
                })
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!endpoint_ports.is_empty()).then_some(endpoint_ports),
            }
        })
        .collect();
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: Some(service_name),
            namespace: service.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// Whether the stored Endpoints already match the desired ones (subsets and labels).
pub fn up_to_date(current: &Endpoints, desired: &Endpoints) -> bool {
    let norm = |s: &Option<Vec<EndpointSubset>>| s.clone().filter(|v| !v.is_empty());
    norm(&current.subsets) == norm(&desired.subsets)
        && current.metadata.labels.clone().unwrap_or_default()
            == desired.metadata.labels.clone().unwrap_or_default()
}

/// The container port a Service port reaches on `pod` (`FindPort`): a number as is, a name looked
/// up among the containers' ports with the same protocol.
fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.as_ref()?.iter().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::testing::pod;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, ServiceSpec};

    fn service(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn web_pod(name: &str, ready: bool, ip: &str) -> Pod {
        let mut p = pod(name, ready, 10);
        p.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some(ip.into());
        }
        if let Some(spec) = p.spec.as_mut() {
            spec.containers = vec![Container {
                name: "app".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }];
        }
        p
    }

    #[test]
    fn ready_and_unready_pods_land_in_separate_address_lists() {
        let pods = vec![
            web_pod("b", true, "10.244.0.2"),
            web_pod("a", false, "10.244.0.1"),
        ];
        let ep = desired(&service(IntOrString::String("http".into())), &pods).unwrap_or_default();
        let subsets = ep.subsets.unwrap_or_default();
        assert_eq!(subsets.len(), 1);
        let ready: Vec<String> = subsets[0]
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.clone())
            .collect();
        let unready: Vec<String> = subsets[0]
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| a.ip.clone())
            .collect();
        assert_eq!(ready, vec!["10.244.0.2"]);
        assert_eq!(unready, vec!["10.244.0.1"]);
        assert_eq!(subsets[0].ports.as_ref().map(|p| p[0].port), Some(8080));
    }

    #[test]
    fn unresolvable_named_ports_leave_the_pod_out() {
        let pods = vec![web_pod("a", true, "10.244.0.1")];
        let ep = desired(&service(IntOrString::String("grpc".into())), &pods).unwrap_or_default();
        assert!(ep.subsets.is_none());
    }

    #[test]
    fn services_without_selector_are_left_alone() {
        let mut svc = service(IntOrString::Int(80));
        if let Some(spec) = svc.spec.as_mut() {
            spec.selector = None;
        }
        assert!(desired(&svc, &[]).is_none());
    }

    #[test]
    fn publishing_not_ready_addresses_lists_every_pod_as_ready() {
        let mut svc = service(IntOrString::Int(8080));
        if let Some(spec) = svc.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        let pods = vec![web_pod("a", false, "10.244.0.1")];
        let ep = desired(&svc, &pods).unwrap_or_default();
        let subset = ep
            .subsets
            .unwrap_or_default()
            .into_iter()
            .next()
            .unwrap_or_default();
        assert_eq!(subset.addresses.map(|a| a.len()), Some(1));
        assert_eq!(subset.not_ready_addresses, None);
    }

    #[test]
    fn terminating_and_finished_pods_are_left_out() {
        let mut gone = web_pod("a", true, "10.244.0.1");
        gone.metadata.deletion_timestamp = Some(crate::sim::util::time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let mut done = web_pod("b", true, "10.244.0.2");
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        let ep = desired(&service(IntOrString::Int(8080)), &[gone, done]).unwrap_or_default();
        assert!(ep.subsets.is_none());
    }

    #[test]
    fn headless_services_get_the_headless_label() {
        let mut svc = service(IntOrString::Int(8080));
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
        }
        let ep = desired(&svc, &[]).unwrap_or_default();
        assert_eq!(
            ep.metadata
                .labels
                .and_then(|l| l.get(HEADLESS_LABEL).cloned()),
            Some(String::new())
        );
    }
}
