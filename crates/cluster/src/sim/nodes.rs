//! The simulated nodes (pure, no I/O): the Node objects `sim-node-0..N-1` the simulator registers,
//! Ready and schedulable, like kubelets joining a cluster.
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// The name of the `i`-th simulated node.
pub fn name(i: usize) -> String {
    format!("sim-node-{i}")
}

/// The InternalIP of the `i`-th simulated node (pods there get it as hostIP).
pub fn ip(i: usize) -> String {
    format!("10.0.{}.{}", i / 250, 10 + i % 250)
}

/// The `i`-th simulated node as registered (metadata and spec; the status is written separately).
pub fn node(i: usize) -> Node {
    let name = name(i);
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), "amd64".to_string()),
                (
                    "node.kubernetes.io/instance-type".to_string(),
                    "serin-sim".to_string(),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(format!("10.244.{i}.0/24")),
            pod_cidrs: Some(vec![format!("10.244.{i}.0/24")]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The status a healthy kubelet posts for the `i`-th node.
pub fn status(i: usize, now: Timestamp) -> NodeStatus {
    let t = super::util::time(now);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(t.clone()),
        last_transition_time: Some(t.clone()),
    };
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity("4".into())),
        ("memory".to_string(), Quantity("16Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip(i),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name(i),
            },
        ]),
        allocatable: Some(resources.clone()),
        capacity: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: format!("sim-boot-{i}"),
            container_runtime_version: "containerd://2.0.0".into(),
            kernel_version: "6.1.0-sim".into(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.35.0".into(),
            machine_id: format!("sim-machine-{i}"),
            operating_system: "linux".into(),
            os_image: "Serin simulated node".into(),
            system_uuid: format!("sim-uuid-{i}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether a node's status already says Ready.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
