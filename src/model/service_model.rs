//! App Mesh's own service model (botocore's `appmesh/2019-01-25/service-2.json`, embedded
//! verbatim), as typed data. Both ends of the API read it: the server validates request
//! bodies against the input shapes, and `appliance ctl` builds requests from the operations.
//! Keeping the model as data rather than hand-copied rules means every range, enum and
//! required member is exactly App Mesh's.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const SERVICE_MODEL_JSON: &str = include_str!("service-2.json");

/// The parsed model, built once per process.
pub fn service_model() -> &'static ServiceModel {
    static MODEL: OnceLock<ServiceModel> = OnceLock::new();
    // The file is compiled in and covered by `service_model_parses`; a failure here is a
    // build defect, not an input error.
    MODEL.get_or_init(|| {
        serde_json::from_str(SERVICE_MODEL_JSON).expect("embedded service-2.json parses")
    })
}

#[derive(Debug, Deserialize)]
pub struct ServiceModel {
    pub metadata: Metadata,
    pub operations: BTreeMap<String, Operation>,
    pub shapes: BTreeMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub api_version: String,
    pub signing_name: String,
    pub service_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Operation {
    pub name: String,
    pub http: HttpBinding,
    pub input: Option<ShapeRef>,
    pub output: Option<ShapeRef>,
    #[serde(default)]
    pub errors: Vec<ShapeRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBinding {
    pub method: String,
    pub request_uri: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeRef {
    pub shape: String,
    /// `uri` or `querystring`; absent for body members.
    pub location: Option<String>,
    pub location_name: Option<String>,
    #[serde(default)]
    pub idempotency_token: bool,
}

impl ShapeRef {
    pub fn is_body(&self) -> bool {
        self.location.is_none()
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Shape {
    Structure {
        #[serde(default)]
        members: BTreeMap<String, ShapeRef>,
        #[serde(default)]
        required: Vec<String>,
        /// Exactly one member may be set.
        #[serde(default)]
        union: bool,
        /// The member that is the whole HTTP body of an output.
        payload: Option<String>,
        #[serde(default)]
        exception: bool,
        error: Option<ErrorTrait>,
    },
    List {
        member: ShapeRef,
        min: Option<i64>,
        max: Option<i64>,
    },
    Map {
        key: ShapeRef,
        value: ShapeRef,
    },
    String {
        min: Option<i64>,
        max: Option<i64>,
        pattern: Option<String>,
        #[serde(rename = "enum")]
        enum_values: Option<Vec<String>>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Long {
        min: Option<i64>,
        max: Option<i64>,
    },
    Boolean {},
    Timestamp {},
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTrait {
    pub http_status_code: u16,
    #[serde(default)]
    pub sender_fault: bool,
}

impl ServiceModel {
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_model_parses_with_all_38_operations() {
        let m = service_model();
        assert_eq!(m.operations.len(), 38);
        assert_eq!(m.metadata.signing_name, "appmesh");
        // Every shape reference resolves, so walkers never meet a dangling name.
        for (name, shape) in &m.shapes {
            let refs: Vec<&ShapeRef> = match shape {
                Shape::Structure { members, .. } => members.values().collect(),
                Shape::List { member, .. } => vec![member],
                Shape::Map { key, value } => vec![key, value],
                _ => vec![],
            };
            for r in refs {
                assert!(
                    m.shape(&r.shape).is_some(),
                    "{name} refers to missing {}",
                    r.shape
                );
            }
        }
    }

    #[test]
    fn port_number_range_is_read_from_the_model() {
        match service_model().shape("PortNumber") {
            Some(Shape::Integer { min, max }) => assert_eq!((*min, *max), (Some(1), Some(65535))),
            other => panic!("unexpected {other:?}"),
        }
    }
}
