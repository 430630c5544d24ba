//! `coordination.k8s.io/v1` Lease decoding and validation as the real API server does it:
//! `MicroTime` fields in RFC 3339 with exactly six fractional digits, stored in UTC, and
//! `ValidateLeaseSpec`'s bounds (pure).
use serde_json::{Value, json};

use super::status::{ApiError, FieldError, FieldErrorKind};

/// Go's `metav1.RFC3339Micro` layout, as error messages quote it.
const MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Parses a `MicroTime` the way `metav1.MicroTime.UnmarshalJSON` does (`time.Parse` with
/// [`MICRO_LAYOUT`]: exactly six fractional digits, `Z` or a numeric offset) and renders it the
/// way `MarshalJSON` does (UTC, six digits, `Z`).
pub fn normalize_micro_time(s: &str) -> Result<String, String> {
    let fraction_ok = s
        .split_once('.')
        .map(|(_, rest)| {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            digits == 6 && s.len() > 19 && s.as_bytes().get(19) == Some(&b'.')
        })
        .unwrap_or(false);
    let parsed = chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .filter(|_| fraction_ok);
    match parsed {
        Some(t) => Ok(t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()),
        None => Err(format!(
            "parsing time \"{s}\" as \"{MICRO_LAYOUT}\": cannot parse"
        )),
    }
}

/// Normalizes and validates a Lease about to be stored.
pub fn prepare(obj: &mut Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let decode = |m: String| {
        ApiError::bad_request(format!(
            "Lease in version \"v1\" cannot be handled as a Lease: {m}"
        ))
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        for field in ["acquireTime", "renewTime"] {
            match spec.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    let t = normalize_micro_time(s).map_err(decode)?;
                    spec.insert(field.into(), json!(t));
                }
                Some(other) => {
                    return Err(decode(format!(
                        "json: cannot unmarshal {} into Go struct field LeaseSpec.spec.{field} of type string",
                        kind(other)
                    )));
                }
            }
        }
    }
    let mut errs = vec![];
    let spec = &obj["spec"];
    if let Some(d) = spec.get("leaseDurationSeconds").filter(|v| !v.is_null())
        && d.as_i64().is_none_or(|d| d <= 0)
    {
        errs.push(FieldError::new(
            "spec.leaseDurationSeconds",
            FieldErrorKind::Invalid(d.clone(), "must be greater than 0".into()),
        ));
    }
    if let Some(t) = spec.get("leaseTransitions").filter(|v| !v.is_null())
        && t.as_i64().is_none_or(|t| t < 0)
    {
        errs.push(FieldError::new(
            "spec.leaseTransitions",
            FieldErrorKind::Invalid(t.clone(), "must be greater than or equal to 0".into()),
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "coordination.k8s.io",
            "Lease",
            &name,
            errs,
        ))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_times_need_six_fractional_digits_and_are_stored_in_utc() {
        let table = [
            (
                "2024-05-01T10:00:00.123456Z",
                Some("2024-05-01T10:00:00.123456Z"),
            ),
            (
                "2024-05-01T12:00:00.000001+02:00",
                Some("2024-05-01T10:00:00.000001Z"),
            ),
            ("2024-05-01T10:00:00Z", None),
            ("2024-05-01T10:00:00.123Z", None),
            ("2024-05-01T10:00:00.123456789Z", None),
            ("yesterday", None),
        ];
        for (input, want) in table {
            assert_eq!(normalize_micro_time(input).ok().as_deref(), want, "{input}");
        }
    }

    #[test]
    fn a_lease_with_a_bad_time_is_a_bad_request_and_bad_bounds_are_invalid() {
        let mut bad_time =
            json!({"metadata": {"name": "l"}, "spec": {"renewTime": "2024-05-01T10:00:00Z"}});
        let e = prepare(&mut bad_time).expect_err("seconds-only renewTime");
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert!(
            e.message.contains("2006-01-02T15:04:05.000000Z07:00"),
            "{}",
            e.message
        );

        let mut bounds = json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        let e = prepare(&mut bounds).expect_err("zero duration");
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .contains("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
            "{}",
            e.message
        );
        assert!(e.message.contains("spec.leaseTransitions"), "{}", e.message);

        let mut good = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a",
            "leaseDurationSeconds": 10, "renewTime": "2024-05-01T12:00:00.500000+02:00"}});
        prepare(&mut good).expect("valid lease");
        assert_eq!(good["spec"]["renewTime"], "2024-05-01T10:00:00.500000Z");
    }
}
