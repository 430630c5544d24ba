//! A Kubernetes RBAC evaluator: does a set of rules allow a request? Pure; used by the tests
//! that check every request the controller makes against the bundle's roles.
//!
//! Semantics follow the RBAC authorizer (`k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac`):
//! a rule matches a resource request when its verbs, API groups, resources (`resource` or
//! `resource/subresource`, `*` and `*/subresource` wildcards) and, if given, resourceNames all
//! match; resourceNames never match requests without a name (list, watch, create,
//! deletecollection). Non-resource rules match `nonResourceURLs` exactly or by a trailing `*`.
use k8s_openapi::api::rbac::v1::PolicyRule;

/// What an API request asks for, in the authorizer's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Request {
    /// A request on an API resource.
    Resource {
        /// Verb: get, list, watch, create, update, patch, delete, deletecollection.
        verb: String,
        /// API group, empty for core.
        group: String,
        /// Plural resource with `/subresource` when there is one.
        resource: String,
        /// Namespace, empty for cluster-scoped objects or all-namespace lists.
        namespace: String,
        /// Object name, empty when the request names none.
        name: String,
    },
    /// A request on any other path (discovery, /version, /openapi, …).
    NonResource {
        /// Lower-case HTTP verb (`get` for GET).
        verb: String,
        /// The URL path.
        path: String,
    },
}

/// Rules bound in one namespace (a RoleBinding) or everywhere (a ClusterRoleBinding).
#[derive(Debug, Clone)]
pub struct Grant {
    /// `None` for a ClusterRoleBinding, else the RoleBinding's namespace.
    pub namespace: Option<String>,
    /// The bound rules.
    pub rules: Vec<PolicyRule>,
}

/// What the default `system:discovery`, `system:public-info-viewer` and `system:basic-user`
/// ClusterRoles grant every authenticated user (bootstrap policy since Kubernetes 1.14): the
/// discovery and health paths, read-only. (basic-user adds only self-review resources.)
pub fn default_authenticated() -> Grant {
    let urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    Grant {
        namespace: None,
        rules: vec![
            PolicyRule {
                non_resource_urls: Some(urls.iter().map(|u| u.to_string()).collect()),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["authorization.k8s.io".into()]),
                resources: Some(vec![
                    "selfsubjectaccessreviews".into(),
                    "selfsubjectrulesreviews".into(),
                ]),
                verbs: vec!["create".into()],
                ..PolicyRule::default()
            },
        ],
    }
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.as_ref()
        .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn resource_matches(rule: &PolicyRule, resource: &str) -> bool {
    let Some(list) = &rule.resources else {
        return false;
    };
    let sub = resource.split_once('/').map(|(_, s)| s);
    list.iter()
        .any(|r| r == "*" || r == resource || sub.is_some_and(|s| r.strip_prefix("*/") == Some(s)))
}

fn name_matches(rule: &PolicyRule, name: &str) -> bool {
    match &rule.resource_names {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => !name.is_empty() && names.iter().any(|n| n == name),
    }
}

fn url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.as_ref().is_some_and(|urls| {
        urls.iter().any(|u| match u.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => u == path,
        })
    })
}

/// Whether one rule allows the request.
pub fn rule_allows(rule: &PolicyRule, request: &Request) -> bool {
    match request {
        Request::Resource {
            verb,
            group,
            resource,
            name,
            ..
        } => {
            verb_matches(rule, verb)
                && has(&rule.api_groups, group)
                && resource_matches(rule, resource)
                && name_matches(rule, name)
        }
        Request::NonResource { verb, path } => verb_matches(rule, verb) && url_matches(rule, path),
    }
}

/// Whether any of the grants allows the request. A namespaced grant covers only resource
/// requests in its namespace (never cluster-scoped or all-namespace requests, nor
/// non-resource paths).
pub fn allows(grants: &[Grant], request: &Request) -> bool {
    grants.iter().any(|g| {
        let in_scope = match (&g.namespace, request) {
            (None, _) => true,
            (Some(ns), Request::Resource { namespace, .. }) => ns == namespace,
            (Some(_), Request::NonResource { .. }) => false,
        };
        in_scope && g.rules.iter().any(|r| rule_allows(r, request))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            verbs: v(verbs),
            resource_names: (!names.is_empty()).then(|| v(names)),
            non_resource_urls: None,
        }
    }

    fn req(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Request {
        Request::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn cluster(rules: Vec<PolicyRule>) -> Vec<Grant> {
        vec![Grant {
            namespace: None,
            rules,
        }]
    }

    #[test]
    fn a_rule_matches_on_group_resource_and_verb() {
        let g = cluster(vec![rule(
            &["apps"],
            &["deployments"],
            &["get", "patch"],
            &[],
        )]);
        assert!(allows(&g, &req("get", "apps", "deployments", "a", "x")));
        assert!(allows(&g, &req("patch", "apps", "deployments", "a", "x")));
        assert!(!allows(&g, &req("delete", "apps", "deployments", "a", "x")));
        assert!(!allows(&g, &req("get", "", "deployments", "a", "x")));
        assert!(!allows(&g, &req("get", "apps", "daemonsets", "a", "x")));
    }

    #[test]
    fn a_subresource_needs_its_own_resource_entry() {
        let g = cluster(vec![rule(&["flagger.app"], &["canaries"], &["patch"], &[])]);
        assert!(!allows(
            &g,
            &req("patch", "flagger.app", "canaries/status", "a", "c")
        ));
        let g = cluster(vec![rule(&["flagger.app"], &["*/status"], &["patch"], &[])]);
        assert!(allows(
            &g,
            &req("patch", "flagger.app", "canaries/status", "a", "c")
        ));
        assert!(!allows(
            &g,
            &req("patch", "flagger.app", "canaries", "a", "c")
        ));
    }

    #[test]
    fn resource_names_never_match_requests_without_a_name() {
        let g = cluster(vec![rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "list"],
            &["l"],
        )]);
        assert!(allows(
            &g,
            &req("get", "coordination.k8s.io", "leases", "a", "l")
        ));
        assert!(!allows(
            &g,
            &req("get", "coordination.k8s.io", "leases", "a", "m")
        ));
        assert!(!allows(
            &g,
            &req("list", "coordination.k8s.io", "leases", "a", "")
        ));
    }

    #[test]
    fn a_role_binding_grants_only_in_its_namespace() {
        let g = vec![Grant {
            namespace: Some("serin-system".into()),
            rules: vec![rule(&["coordination.k8s.io"], &["leases"], &["get"], &[])],
        }];
        assert!(allows(
            &g,
            &req("get", "coordination.k8s.io", "leases", "serin-system", "l")
        ));
        assert!(!allows(
            &g,
            &req("get", "coordination.k8s.io", "leases", "other", "l")
        ));
        assert!(!allows(
            &g,
            &req("get", "coordination.k8s.io", "leases", "", "l")
        ));
    }

    #[test]
    fn wildcards_match_everything_in_their_field() {
        let g = cluster(vec![rule(&["*"], &["*"], &["*"], &[])]);
        assert!(allows(
            &g,
            &req("deletecollection", "x.io", "things/scale", "", "")
        ));
    }

    #[test]
    fn every_authenticated_user_may_read_discovery_but_nothing_else() {
        let g = vec![default_authenticated()];
        let get = |p: &str| Request::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/openapi/v3",
            "/version",
        ] {
            assert!(allows(&g, &get(p)), "{p}");
        }
        assert!(!allows(&g, &get("/metrics")));
        assert!(!allows(&g, &get("/logs")));
        assert!(!allows(
            &g,
            &Request::NonResource {
                verb: "post".into(),
                path: "/api".into()
            }
        ));
        assert!(!allows(&g, &req("list", "", "pods", "a", "")));
    }
}
