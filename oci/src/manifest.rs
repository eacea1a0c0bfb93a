//! The JSON documents of an image: descriptors, image manifests, indexes (OCI
//! index and Docker manifest list) and the image config.
//!
//! These are our own types rather than `oci-spec`'s because they must keep
//! unknown fields when re-serialised, and the config must carry what Docker
//! images carry (Healthcheck, OnBuild, Shell, ArgsEscaped, history
//! `empty_layer`). Raw manifest bytes are always stored as received; these types
//! are for reading them and for writing new ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::{Algorithm, Digest};
use crate::media_types as mt;

pub type Annotations = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {what}: schemaVersion is {found}, expected 2")]
    SchemaVersion { what: &'static str, found: u64 },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("Docker schema 1 manifests are not supported (media type {0})")]
    Schema1(String),
    #[error("invalid manifest: mediaType field {field:?} disagrees with {declared:?}")]
    MediaTypeMismatch { field: String, declared: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_string),
            features: None,
            extra: Map::new(),
        }
    }

    /// The platform this process runs on, with Go's architecture names.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// `linux/arm64/v8`.
    pub fn to_short_string(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            data: None,
            platform: None,
            artifact_type: None,
            extra: Map::new(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u64,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u64,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageIndex {
    pub fn new_oci(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(mt::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: None,
            extra: Map::new(),
        }
    }
}

/// A manifest of either kind, as read from bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

impl Manifest {
    /// Parses manifest bytes. `declared` is the media type the bytes came with
    /// (a descriptor's or a Content-Type), if any; the document's own
    /// `mediaType` field must agree with it.
    pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<Manifest, ManifestError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "manifest",
            source,
        })?;
        let field = value
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let (Some(f), Some(d)) = (&field, declared)
            && f != d
        {
            return Err(ManifestError::MediaTypeMismatch {
                field: f.clone(),
                declared: d.to_string(),
            });
        }
        let kind = field.as_deref().or(declared);
        if let Some(k) = kind
            && (k == mt::DOCKER_SCHEMA1_MANIFEST || k == mt::DOCKER_SCHEMA1_SIGNED)
        {
            return Err(ManifestError::Schema1(k.to_string()));
        }
        let schema = value
            .get("schemaVersion")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if schema == 1 {
            return Err(ManifestError::Schema1("schemaVersion 1".to_string()));
        }
        let is_index = match kind {
            Some(k) if mt::is_index(k) => true,
            Some(k) if mt::is_image_manifest(k) => false,
            Some(k) => return Err(ManifestError::UnsupportedMediaType(k.to_string())),
            // The media type is optional in OCI documents: decide by shape.
            None => value.get("manifests").is_some(),
        };
        if schema != 2 {
            let what = if is_index {
                "image index"
            } else {
                "image manifest"
            };
            return Err(ManifestError::SchemaVersion {
                what,
                found: schema,
            });
        }
        if is_index {
            serde_json::from_value(value)
                .map(|i| Manifest::Index(Box::new(i)))
                .map_err(|source| ManifestError::Json {
                    what: "image index",
                    source,
                })
        } else {
            serde_json::from_value(value)
                .map(|m| Manifest::Image(Box::new(m)))
                .map_err(|source| ManifestError::Json {
                    what: "image manifest",
                    source,
                })
        }
    }

    /// The media type to store and serve these bytes with.
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => m.media_type.as_deref().unwrap_or(mt::OCI_MANIFEST),
            Manifest::Index(i) => i.media_type.as_deref().unwrap_or(mt::OCI_INDEX),
        }
    }

    /// Every descriptor this manifest points at (config, layers, children, subject).
    pub fn references(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Image(m) => std::iter::once(&m.config)
                .chain(m.layers.iter())
                .chain(m.subject.iter())
                .collect(),
            Manifest::Index(i) => i.manifests.iter().chain(i.subject.iter()).collect(),
        }
    }
}

/// Serialises a document the way Go's encoding/json does for these types
/// (compact, fields in declaration order), returning the bytes and their digest.
pub fn to_canonical_json<T: Serialize>(doc: &T) -> Result<(Vec<u8>, Digest), serde_json::Error> {
    let bytes = serde_json::to_vec(doc)?;
    let digest = Digest::of_bytes(Algorithm::Sha256, &bytes);
    Ok((bytes, digest))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthConfig {
    #[serde(rename = "Test", default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(rename = "Interval", default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(rename = "Timeout", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(
        rename = "StartPeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_period: Option<i64>,
    #[serde(
        rename = "StartInterval",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_interval: Option<i64>,
    #[serde(rename = "Retries", default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `config` object of an image config: what a container runs with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(
        rename = "ArgsEscaped",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub args_escaped: Option<bool>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The image config (OCI `application/vnd.oci.image.config.v1+json`, which
/// Docker's `application/vnd.docker.container.image.v1+json` extends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image config",
            source,
        })
    }

    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: self.variant.clone(),
            features: None,
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG_JSON: &str = r#"{"architecture":"amd64","config":{"Hostname":"","User":"","Env":["PATH=/bin"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"OnBuild":null,"ArgsEscaped":true,"Shell":["/bin/sh","-c"]},"container":"abc","created":"2024-01-01T00:00:00Z","docker_version":"24.0","history":[{"created":"2024-01-01T00:00:00Z","created_by":"CMD [\"sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;

    #[test]
    fn config_keeps_docker_fields_and_unknown_ones() {
        let c = ImageConfig::parse(DOCKER_CONFIG_JSON.as_bytes()).unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.args_escaped, Some(true));
        assert_eq!(
            cc.healthcheck.as_ref().unwrap().interval,
            Some(30_000_000_000)
        );
        assert_eq!(cc.shell.as_ref().unwrap().len(), 2);
        assert_eq!(c.history[0].empty_layer, Some(true));
        let out: Value = serde_json::to_value(&c).unwrap();
        assert_eq!(out["docker_version"], "24.0");
        assert_eq!(out["container"], "abc");
        assert_eq!(out["config"]["Hostname"], "");
    }

    #[test]
    fn manifest_kinds_by_media_type_and_shape() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let img = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{d}","size":0}},"layers":[],"x-unknown":1}}"#,
            mt::OCI_CONFIG
        );
        let m = Manifest::parse(img.as_bytes(), None).unwrap();
        assert!(matches!(m, Manifest::Image(_)));
        assert_eq!(m.media_type(), mt::OCI_MANIFEST);
        let Manifest::Image(im) = &m else {
            unreachable!()
        };
        assert_eq!(serde_json::to_value(im).unwrap()["x-unknown"], 1);

        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{d}","size":2,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
            mt::DOCKER_MANIFEST_LIST,
            mt::DOCKER_MANIFEST
        );
        let m = Manifest::parse(idx.as_bytes(), Some(mt::DOCKER_MANIFEST_LIST)).unwrap();
        let Manifest::Index(i) = &m else { panic!() };
        assert_eq!(
            i.manifests[0].platform.as_ref().unwrap().to_short_string(),
            "linux/arm64/v8"
        );

        assert!(matches!(
            Manifest::parse(idx.as_bytes(), Some(mt::OCI_INDEX)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::Schema1(_))
        ));
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":3,"config":{}}"#, None),
            Err(ManifestError::SchemaVersion { .. })
        ));
        assert!(Manifest::parse(b"[", None).is_err());
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn our_manifests_read_by_oci_spec() {
        let d = Digest::sha256_of(b"{}");
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(mt::OCI_CONFIG, d.clone(), 2),
            layers: vec![Descriptor::new(mt::OCI_LAYER_GZIP, d, 2)],
            subject: None,
            annotations: None,
            extra: Map::new(),
        };
        let (bytes, _) = to_canonical_json(&m).unwrap();
        let theirs: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(theirs.layers().len(), 1);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn manifest_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = Manifest::parse(&bytes, None);
                let _ = ImageConfig::parse(&bytes);
            }

            #[test]
            fn manifest_reader_never_panics_on_jsonish(s in r#"\{("(schemaVersion|mediaType|config|layers|manifests|digest|size)":(2|1|"[a-z/.+0-9:]{0,20}"|\[\]|\{\}|null),?){0,6}\}"#) {
                let _ = Manifest::parse(s.as_bytes(), None);
                let _ = Manifest::parse(s.as_bytes(), Some(mt::OCI_INDEX));
            }
        }
    }
}
