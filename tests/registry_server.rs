//! End-to-end tests of `berth registry serve`: every endpoint and error case
//! with curl, skopeo in both directions, the Docker engine, auth (htpasswd and
//! the token service), kill -9 crash safety, online GC and memory use.

mod common;
mod registry_support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use registry_support::*;
use serde_json::json;

const OCI_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn base_endpoint_names_and_unknowns() {
    let s = Server::start();
    let r = s.req("GET", "/v2/").send();
    r.assert_status(200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(r.json(), json!({}));

    // Names outside the grammar, traversal included.
    for bad in [
        "/v2/Upper/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/_x/tags/list",
        "/v2/a/_layers/tags/list",
    ] {
        s.req("GET", bad).send().assert_error(400, "NAME_INVALID");
    }
    s.req("GET", "/v2/nope/tags/list")
        .send()
        .assert_error(404, "NAME_UNKNOWN");
    s.req("GET", "/v2/nope/manifests/latest")
        .send()
        .assert_error(404, "MANIFEST_UNKNOWN");
    let d = digest_of(b"absent");
    s.req("GET", &format!("/v2/nope/blobs/{d}"))
        .send()
        .assert_error(404, "BLOB_UNKNOWN");
    let head = s.req("HEAD", &format!("/v2/nope/blobs/{d}")).send();
    assert_eq!(head.status, 404);
    s.req("GET", "/v2/nope/blobs/sha256:1234")
        .send()
        .assert_error(400, "DIGEST_INVALID");
    s.req("GET", "/v2/nope/blobs/md5:1234")
        .send()
        .assert_error(400, "DIGEST_INVALID");
    s.req("GET", "/v2/nope/manifests/bad:tag!")
        .send()
        .assert_error(400, "MANIFEST_INVALID");
    s.req(
        "PATCH",
        "/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef",
    )
    .body(b"x")
    .send()
    .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    s.req("GET", "/v2/a/blobs/uploads/../../etc")
        .send()
        .assert_error(404, "UNSUPPORTED");
    s.req("POST", "/v2/a/tags/list")
        .send()
        .assert_error(405, "UNSUPPORTED");

    assert_eq!(s.req("GET", "/healthz").send().status, 200);
    assert_eq!(s.req("GET", "/readyz").send().status, 200);
    let metrics = String::from_utf8(s.req("GET", "/metrics").send().body).unwrap();
    assert!(
        metrics.contains("berth_registry_requests_total{route=\"tags\",status=\"400\"}"),
        "{metrics}"
    );
}

#[test]
fn blob_uploads_every_way_with_digest_checks() {
    let s = Server::start();
    // Monolithic POST ?digest=, then GET/HEAD with exact headers.
    let data = random_bytes(300_000, 1);
    let d = push_blob(&s, "lib/app", &data);
    let r = s.req("GET", &format!("/v2/lib/app/blobs/{d}")).send();
    r.assert_status(200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let h = s.req("HEAD", &format!("/v2/lib/app/blobs/{d}")).send();
    h.assert_status(200);
    assert_eq!(h.header("content-length"), Some("300000"));
    assert!(h.body.is_empty());

    // Ranges: 206 with Content-Range, suffix ranges, 416 past the end.
    let r = s
        .req("GET", &format!("/v2/lib/app/blobs/{d}"))
        .header("Range: bytes=10-19")
        .send();
    r.assert_status(206);
    assert_eq!(r.body, data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/300000"));
    let r = s
        .req("GET", &format!("/v2/lib/app/blobs/{d}"))
        .header("Range: bytes=-5")
        .send();
    r.assert_status(206);
    assert_eq!(r.body, data[299_995..]);
    let r = s
        .req("GET", &format!("/v2/lib/app/blobs/{d}"))
        .header("Range: bytes=300000-")
        .send();
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));

    // Another repository cannot read it by guessing the digest.
    s.req("GET", &format!("/v2/other/blobs/{d}"))
        .send()
        .assert_error(404, "BLOB_UNKNOWN");

    // POST then PUT with the whole body.
    let data2 = random_bytes(5000, 2);
    let d2 = digest_of(&data2);
    let post = s.req("POST", "/v2/lib/app/blobs/uploads/").send();
    post.assert_status(202);
    let loc = post.header("location").unwrap().to_string();
    assert!(loc.starts_with("/v2/lib/app/blobs/uploads/"), "{loc}");
    assert_eq!(post.header("range"), Some("0-0"));
    assert!(post.header("docker-upload-uuid").is_some());
    let put = s
        .req("PUT", &format!("{loc}?digest={d2}"))
        .body(&data2)
        .send();
    put.assert_status(201);
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/lib/app/blobs/{d2}").as_str())
    );
    assert_eq!(put.header("docker-content-digest"), Some(d2.as_str()));
    assert_eq!(
        s.req("GET", &format!("/v2/lib/app/blobs/{d2}")).send().body,
        data2
    );

    // Chunked PATCHes with Content-Range, out of order -> 416, status GET.
    let data3 = random_bytes(30_000, 3);
    let d3 = digest_of(&data3);
    let loc = s
        .req("POST", "/v2/lib/app/blobs/uploads/")
        .send()
        .header("location")
        .unwrap()
        .to_string();
    let p1 = s
        .req("PATCH", &loc)
        .header("Content-Range: 0-9999")
        .header("Content-Type: application/octet-stream")
        .body(&data3[..10_000])
        .send();
    p1.assert_status(202);
    assert_eq!(p1.header("range"), Some("0-9999"));
    let loc = p1.header("location").unwrap().to_string();
    let skipped = s
        .req("PATCH", &loc)
        .header("Content-Range: 20000-29999")
        .body(&data3[20_000..])
        .send();
    assert_eq!(skipped.status, 416, "{:?}", skipped);
    assert_eq!(skipped.code(), "BLOB_UPLOAD_INVALID");
    assert_eq!(skipped.header("range"), Some("0-9999"));
    let status = s.req("GET", &loc).send();
    status.assert_status(204);
    assert_eq!(status.header("range"), Some("0-9999"));
    s.req("PATCH", &loc)
        .header("Content-Range: 10000-19999")
        .body(&data3[10_000..20_000])
        .send()
        .assert_status(202);
    // Streamed PATCH without Content-Range, then an empty PUT.
    s.req("PATCH", &loc)
        .body(&data3[20_000..])
        .send()
        .assert_status(202);
    s.req("PUT", &format!("{loc}?digest={d3}"))
        .send()
        .assert_status(201);
    assert_eq!(
        s.req("GET", &format!("/v2/lib/app/blobs/{d3}")).send().body,
        data3
    );
    // The session is gone after completion.
    s.req("GET", &loc)
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");

    // A wrong digest: DIGEST_INVALID and nothing stored.
    let wrong = digest_of(b"something else");
    s.req(
        "POST",
        &format!("/v2/lib/app/blobs/uploads/?digest={wrong}"),
    )
    .body(b"actual content")
    .send()
    .assert_error(400, "DIGEST_INVALID");
    s.req("GET", &format!("/v2/lib/app/blobs/{wrong}"))
        .send()
        .assert_error(404, "BLOB_UNKNOWN");
    let actual = digest_of(b"actual content");
    s.req("GET", &format!("/v2/lib/app/blobs/{actual}"))
        .send()
        .assert_error(404, "BLOB_UNKNOWN");
    assert!(
        !s.root()
            .join("blobs/sha256")
            .join(&actual[7..9])
            .join(&actual[7..])
            .exists()
    );
    let loc = s
        .req("POST", "/v2/lib/app/blobs/uploads/")
        .send()
        .header("location")
        .unwrap()
        .to_string();
    s.req("PUT", &loc)
        .body(b"x")
        .send()
        .assert_error(400, "DIGEST_INVALID");

    // Cancel.
    let loc = s
        .req("POST", "/v2/lib/app/blobs/uploads/")
        .send()
        .header("location")
        .unwrap()
        .to_string();
    s.req("DELETE", &loc).send().assert_status(204);
    s.req("GET", &loc)
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    s.req("DELETE", &loc)
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");

    // sha512 by digest-algorithm and by a sha512 digest.
    let data5 = random_bytes(7777, 5);
    let d5 = sha512_digest_of(&data5);
    let post = s
        .req("POST", "/v2/lib/app/blobs/uploads/?digest-algorithm=sha512")
        .send();
    post.assert_status(202);
    let loc = post.header("location").unwrap().to_string();
    s.req("PATCH", &loc).body(&data5).send().assert_status(202);
    let put = s.req("PUT", &format!("{loc}?digest={d5}")).send();
    put.assert_status(201);
    assert_eq!(put.header("docker-content-digest"), Some(d5.as_str()));
    assert_eq!(
        s.req("GET", &format!("/v2/lib/app/blobs/{d5}")).send().body,
        data5
    );
    let bad512 = sha512_digest_of(b"nope");
    s.req(
        "POST",
        &format!("/v2/lib/app/blobs/uploads/?digest={bad512}"),
    )
    .body(&data5)
    .send()
    .assert_error(400, "DIGEST_INVALID");
    s.req("POST", "/v2/lib/app/blobs/uploads/?digest-algorithm=md5")
        .send()
        .assert_error(400, "DIGEST_INVALID");

    // Cross-repository mount: 201 when the source holds it, else 202.
    let m = s
        .req(
            "POST",
            &format!("/v2/copy/blobs/uploads/?mount={d}&from=lib/app"),
        )
        .send();
    m.assert_status(201);
    assert_eq!(
        m.header("location"),
        Some(format!("/v2/copy/blobs/{d}").as_str())
    );
    assert_eq!(
        s.req("GET", &format!("/v2/copy/blobs/{d}")).send().body,
        data
    );
    let m = s
        .req(
            "POST",
            &format!("/v2/copy2/blobs/uploads/?mount={d}&from=nothere"),
        )
        .send();
    m.assert_status(202);
    assert!(
        m.header("location")
            .unwrap()
            .contains("/v2/copy2/blobs/uploads/")
    );
    let m = s
        .req("POST", &format!("/v2/copy2/blobs/uploads/?mount={d}"))
        .send();
    assert_eq!(
        m.status, 202,
        "a mount without from must not find blobs by digest alone"
    );

    // Blob delete.
    s.req("DELETE", &format!("/v2/copy/blobs/{d}"))
        .send()
        .assert_status(202);
    s.req("GET", &format!("/v2/copy/blobs/{d}"))
        .send()
        .assert_error(404, "BLOB_UNKNOWN");
    s.req("DELETE", &format!("/v2/copy/blobs/{d}"))
        .send()
        .assert_error(404, "BLOB_UNKNOWN");
    // ... which leaves the other repository's link alone.
    assert_eq!(
        s.req("GET", &format!("/v2/lib/app/blobs/{d}"))
            .send()
            .status,
        200
    );
}

#[test]
fn manifests_tags_referrers_catalog_and_deletes() {
    let s = Server::start();
    let (manifest, md, cd, ld) = push_image(&s, "app", "v1", 10);

    // GET/HEAD by tag and by digest.
    for reference in ["v1", md.as_str()] {
        let r = s
            .req("GET", &format!("/v2/app/manifests/{reference}"))
            .send();
        r.assert_status(200);
        assert_eq!(r.body, manifest);
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST_TYPE));
        assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
        assert_eq!(
            r.header("content-length"),
            Some(manifest.len().to_string().as_str())
        );
        let h = s
            .req("HEAD", &format!("/v2/app/manifests/{reference}"))
            .send();
        h.assert_status(200);
        assert_eq!(h.header("docker-content-digest"), Some(md.as_str()));
        assert_eq!(
            h.header("content-length"),
            Some(manifest.len().to_string().as_str())
        );
    }

    // Validation: unknown blob, bad JSON, schema 1, wrong digest, too large, bad tag.
    let config_len: usize = s
        .req("HEAD", &format!("/v2/app/blobs/{cd}"))
        .send()
        .header("content-length")
        .unwrap()
        .parse()
        .unwrap();
    let missing = digest_of(b"missing layer");
    let bad = image_manifest(&cd, config_len, &[(&missing, 13)], None);
    s.req("PUT", "/v2/app/manifests/bad")
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(&bad)
        .send()
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    s.req("PUT", "/v2/app/manifests/bad")
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(b"{not json")
        .send()
        .assert_error(400, "MANIFEST_INVALID");
    s.req("PUT", "/v2/app/manifests/bad")
        .header("Content-Type: application/vnd.docker.distribution.manifest.v1+prettyjws")
        .body(br#"{"schemaVersion":1}"#)
        .send()
        .assert_error(400, "MANIFEST_INVALID");
    s.req("PUT", &format!("/v2/app/manifests/{}", digest_of(b"other")))
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(&manifest)
        .send()
        .assert_error(400, "DIGEST_INVALID");
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = s
        .req("PUT", "/v2/app/manifests/huge")
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(&huge)
        .send();
    r.assert_error(413, "SIZE_INVALID");
    s.req("PUT", "/v2/app/manifests/-bad")
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(&manifest)
        .send()
        .assert_error(400, "MANIFEST_INVALID");
    s.req("GET", "/v2/app/manifests/bad")
        .send()
        .assert_error(404, "MANIFEST_UNKNOWN");
    // The layer's size must match the descriptor's.
    let wrong_size = image_manifest(&cd, config_len, &[(&ld, 1)], None);
    s.req("PUT", "/v2/app/manifests/bad")
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(&wrong_size)
        .send()
        .assert_error(400, "MANIFEST_INVALID");

    // PUT by digest with ?tag= parameters.
    let (m2, md2, ..) = {
        let (m, d, c, l) = push_image(&s, "app", "tmp", 11);
        (m, d, c, l)
    };
    let r = s
        .req("PUT", &format!("/v2/app/manifests/{md2}?tag=a1&tag=b2"))
        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
        .body(&m2)
        .send();
    r.assert_status(201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/app/manifests/{md2}").as_str())
    );
    for t in ["a1", "b2"] {
        assert_eq!(
            s.req("GET", &format!("/v2/app/manifests/{t}"))
                .send()
                .header("docker-content-digest"),
            Some(md2.as_str())
        );
    }

    // An index: children must exist in the repository.
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST_TYPE, "digest": md, "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let r = s
        .req("PUT", "/v2/app/manifests/multi")
        .header("Content-Type: application/vnd.oci.image.index.v1+json")
        .body(&index_bytes)
        .send();
    r.assert_status(201);
    let mut bad_index = index.clone();
    bad_index["manifests"][0]["digest"] = json!(digest_of(b"no such manifest"));
    s.req("PUT", "/v2/other/manifests/multi")
        .header("Content-Type: application/vnd.oci.image.index.v1+json")
        .body(&serde_json::to_vec(&index).unwrap())
        .send()
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    s.req("PUT", "/v2/app/manifests/multi2")
        .header("Content-Type: application/vnd.oci.image.index.v1+json")
        .body(&serde_json::to_vec(&bad_index).unwrap())
        .send()
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    let r = s.req("GET", "/v2/app/manifests/multi").send();
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );

    // Artifacts with a subject: OCI-Subject, referrers, artifactType filter.
    let empty = push_blob(&s, "app", b"{}");
    let mut referrer_digests = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let layer = push_blob(&s, "app", format!("payload {i}").as_bytes());
        let art = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_TYPE,
            "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "text/plain", "digest": layer, "size": 9}],
            "subject": {"mediaType": OCI_MANIFEST_TYPE, "digest": md, "size": manifest.len()},
            "annotations": {"n": i.to_string()},
        });
        let bytes = serde_json::to_vec(&art).unwrap();
        let ad = digest_of(&bytes);
        let r = s
            .req("PUT", &format!("/v2/app/manifests/{ad}"))
            .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
            .body(&bytes)
            .send();
        r.assert_status(201);
        assert_eq!(r.header("oci-subject"), Some(md.as_str()));
        referrer_digests.push(ad);
    }
    let r = s.req("GET", &format!("/v2/app/referrers/{md}")).send();
    r.assert_status(200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let list = r.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2, "{list}");
    assert!(r.header("oci-filters-applied").is_none());
    let r = s
        .req(
            "GET",
            &format!("/v2/app/referrers/{md}?artifactType=application/vnd.example.sig"),
        )
        .send();
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let list = r.json();
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(entries[0]["digest"], referrer_digests[1].as_str());
    assert_eq!(entries[0]["annotations"]["n"], "1");
    // Unknown subject: an empty list, never 404.
    let r = s
        .req("GET", &format!("/v2/app/referrers/{}", digest_of(b"x")))
        .send();
    r.assert_status(200);
    assert_eq!(r.json()["manifests"], json!([]));
    s.req("GET", "/v2/app/referrers/sha256:zz")
        .send()
        .assert_error(400, "DIGEST_INVALID");

    // Tag list pagination.
    for t in ["t3", "t1", "t2"] {
        s.req("PUT", &format!("/v2/app/manifests/{t}"))
            .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
            .body(&manifest)
            .send()
            .assert_status(201);
    }
    let all = s.req("GET", "/v2/app/tags/list").send().json();
    assert_eq!(
        all["tags"],
        json!(["a1", "b2", "multi", "t1", "t2", "t3", "tmp", "v1"])
    );
    let p = s.req("GET", "/v2/app/tags/list?n=2").send();
    assert_eq!(p.json()["tags"], json!(["a1", "b2"]));
    assert_eq!(
        p.header("link"),
        Some("</v2/app/tags/list?n=2&last=b2>; rel=\"next\"")
    );
    let p = s.req("GET", "/v2/app/tags/list?n=3&last=t1").send();
    assert_eq!(p.json()["tags"], json!(["t2", "t3", "tmp"]));
    assert!(p.header("link").is_some());
    let p = s.req("GET", "/v2/app/tags/list?n=10&last=t3").send();
    assert_eq!(p.json()["tags"], json!(["tmp", "v1"]));
    assert!(p.header("link").is_none());
    let p = s.req("GET", "/v2/app/tags/list?n=0").send();
    assert_eq!(p.json()["tags"], json!([]));

    // Catalog pagination.
    push_blob(&s, "zeta/x", b"z");
    push_image(&s, "beta", "1", 12);
    let c = s.req("GET", "/v2/_catalog").send().json();
    assert_eq!(c["repositories"], json!(["app", "beta", "zeta/x"]));
    let c = s.req("GET", "/v2/_catalog?n=1").send();
    assert_eq!(c.json()["repositories"], json!(["app"]));
    assert_eq!(
        c.header("link"),
        Some("</v2/_catalog?n=1&last=app>; rel=\"next\"")
    );
    let c = s.req("GET", "/v2/_catalog?n=1&last=app").send();
    assert_eq!(c.json()["repositories"], json!(["beta"]));

    // Deletes: a tag, then a manifest with its remaining tags and referrer entry.
    s.req("DELETE", "/v2/app/manifests/t1")
        .send()
        .assert_status(202);
    s.req("GET", "/v2/app/manifests/t1")
        .send()
        .assert_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(s.req("GET", "/v2/app/manifests/t2").send().status, 200);
    s.req(
        "DELETE",
        &format!("/v2/app/manifests/{}", referrer_digests[0]),
    )
    .send()
    .assert_status(202);
    let list = s
        .req("GET", &format!("/v2/app/referrers/{md}"))
        .send()
        .json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);
    s.req("DELETE", &format!("/v2/app/manifests/{md}"))
        .send()
        .assert_status(202);
    for t in ["v1", "t2", "t3"] {
        s.req("GET", &format!("/v2/app/manifests/{t}"))
            .send()
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    s.req("GET", &format!("/v2/app/manifests/{md}"))
        .send()
        .assert_error(404, "MANIFEST_UNKNOWN");
    s.req("DELETE", &format!("/v2/app/manifests/{md}"))
        .send()
        .assert_error(404, "MANIFEST_UNKNOWN");

    // Opaque manifests of an unknown media type are stored as they are.
    let opaque = br#"{"whatever":true}"#;
    let r = s
        .req("PUT", "/v2/app/manifests/opaque")
        .header("Content-Type: application/vnd.example.thing+json")
        .body(opaque)
        .send();
    r.assert_status(201);
    let g = s.req("GET", "/v2/app/manifests/opaque").send();
    assert_eq!(g.body, opaque);
    assert_eq!(
        g.header("content-type"),
        Some("application/vnd.example.thing+json")
    );
}

#[test]
fn config_file_env_overrides_and_disabled_deletes() {
    let s = Server::start_with("storage:\n  delete_enabled: false\n");
    let (_, md, _, ld) = push_image(&s, "app", "v1", 20);
    s.req("DELETE", &format!("/v2/app/manifests/{md}"))
        .send()
        .assert_error(405, "UNSUPPORTED");
    s.req("DELETE", "/v2/app/manifests/v1")
        .send()
        .assert_error(405, "UNSUPPORTED");
    s.req("DELETE", &format!("/v2/app/blobs/{ld}"))
        .send()
        .assert_error(405, "UNSUPPORTED");
    assert_eq!(s.req("GET", "/v2/app/manifests/v1").send().status, 200);

    // Environment overrides the file; the manifest limit applies.
    let s2 = Server::start_env(
        "storage:\n  delete_enabled: true\n",
        &[
            ("BERTH_REGISTRY_STORAGE_DELETE_ENABLED", "false"),
            ("BERTH_REGISTRY_STORAGE_MANIFEST_MAX_BYTES", "100"),
        ],
    );
    let (.., ld2) = {
        let config = br#"{"os":"linux"}"#;
        let cd = push_blob(&s2, "app", config);
        let m = image_manifest(&cd, config.len(), &[], None);
        let r = s2
            .req("PUT", "/v2/app/manifests/v1")
            .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
            .body(&m)
            .send();
        r.assert_error(413, "SIZE_INVALID");
        (0, cd)
    };
    s2.req("DELETE", &format!("/v2/app/blobs/{ld2}"))
        .send()
        .assert_error(405, "UNSUPPORTED");

    // --print-config shows the effective config; bad keys are named with their line.
    let root = Root::new();
    let cfg = root.scratch("r.yaml");
    fs::write(&cfg, "addr: 127.0.0.1:7000\ngc:\n  grace_period_secs: 12\n").unwrap();
    let printed = root.stdout(&[
        "registry",
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--print-config",
    ]);
    assert!(printed.contains("grace_period_secs: 12"), "{printed}");
    assert!(printed.contains("127.0.0.1:7000"), "{printed}");
    fs::write(&cfg, "addr: 127.0.0.1:7000\ngc:\n  grace_period: 12\n").unwrap();
    let err = root.fails(&["registry", "serve", "--config", cfg.to_str().unwrap()]);
    assert!(err.contains("grace_period") && err.contains('3'), "{err}");
    let mut cmd = root.cmd();
    cmd.args(["registry", "serve", "--print-config"])
        .env("BERTH_REGISTRY_NO_SUCH", "1");
    let out = run(&mut cmd);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("BERTH_REGISTRY_NO_SUCH"),
        "{}",
        show(&out)
    );
}

fn skopeo_tool() -> Option<std::path::PathBuf> {
    require_tool("skopeo").then(|| find_tool("skopeo").unwrap())
}

#[test]
fn skopeo_copy_both_ways_inspect_list_delete() {
    let Some(_) = skopeo_tool() else { return };
    let s = Server::start();
    let fx = fixture();
    let src = format!("oci-archive:{}:busybox:latest", fx.archive.display());
    let dst = format!("docker://{}/library/busybox:1.0", s.addr);
    skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &dst,
        &format!("docker://{}/mirror/busybox:copied", s.addr),
    ]);

    let inspect = skopeo_json(&["inspect", "--tls-verify=false", &dst]);
    assert_eq!(inspect["Digest"], fx.image.manifest_digest.as_str());
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &dst]);
    assert_eq!(digest_of(raw.as_bytes()), fx.image.manifest_digest);
    let tags = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/library/busybox", s.addr),
    ]);
    assert_eq!(tags["Tags"], json!(["1.0"]));

    // Pull back into an OCI layout: every blob identical.
    let out = s.scratch("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/mirror/busybox:copied", s.addr),
        &format!("oci:{}:x", out.display()),
    ]);
    let pulled = Image::from_layout(&out, Some("x"));
    assert_eq!(pulled.manifest_digest, fx.image.manifest_digest);
    assert_eq!(pulled.layers, fx.image.layers);
    for l in &pulled.layers {
        assert_eq!(sha256_file(&blob_path(&out, l)), *l);
    }

    skopeo(&["delete", "--tls-verify=false", &dst]);
    let mut c = Command::new(find_tool("skopeo").unwrap());
    c.args(["inspect", "--tls-verify=false", &dst]);
    let o = run(&mut c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("manifest unknown"), "{}", show(&o));
}

#[test]
fn docker_engine_pushes_and_pulls() {
    if !require_root() || !require_tool("dockerd") || !require_tool("skopeo") {
        return;
    }
    let s = Server::start();
    let fx = fixture();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci-archive:{}:busybox:latest", fx.archive.display()),
        &format!("docker://{}/seed/busybox:1", s.addr),
    ]);
    let d = common::dockerd::Dockerd::start();
    let seeded = format!("{}/seed/busybox:1", s.addr);
    d.docker(&["pull", &seeded]);
    let pushed = format!("{}/docker/busybox:pushed", s.addr);
    d.docker(&["tag", &seeded, &pushed]);
    let out = d.docker(&["push", &pushed]);
    assert!(out.contains("digest: sha256:"), "{out}");
    d.docker(&["rmi", &seeded, &pushed]);
    d.docker(&["pull", &pushed]);
    let id = d.docker(&["image", "inspect", "--format", "{{.Id}}", &pushed]);
    assert_eq!(id.trim(), fx.image.id());
    // The registry holds what docker pushed.
    let tags = s.req("GET", "/v2/docker/busybox/tags/list").send().json();
    assert_eq!(tags["tags"], json!(["pushed"]));
}

fn htpasswd_file(s: &Server, users: &[(&str, &str)]) -> std::path::PathBuf {
    let p = s.scratch("htpasswd");
    for (i, (u, pw)) in users.iter().enumerate() {
        let mut c = Command::new(find_tool("htpasswd").expect("htpasswd"));
        c.arg("-bB");
        if i == 0 {
            c.arg("-c");
        }
        c.arg(&p).arg(u).arg(pw);
        run_ok(&mut c);
    }
    p
}

#[test]
fn basic_auth_with_htpasswd() {
    if !require_tool("htpasswd") {
        return;
    }
    // The file must exist before the server starts: make it in a first dir.
    let pre = Server::start();
    let file = htpasswd_file(&pre, &[("alice", "s3cret")]);
    let s = Server::start_with(&format!("auth:\n  htpasswd: {}\n", file.display()));
    let r = s.req("GET", "/v2/").send();
    r.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"berth-registry\"")
    );
    s.req("GET", "/v2/")
        .arg("-u")
        .arg("alice:wrong")
        .send()
        .assert_error(401, "UNAUTHORIZED");
    s.req("GET", "/v2/")
        .arg("-u")
        .arg("bob:s3cret")
        .send()
        .assert_error(401, "UNAUTHORIZED");
    s.req("GET", "/v2/")
        .arg("-u")
        .arg("alice:s3cret")
        .send()
        .assert_status(200);
    s.req("GET", "/v2/x/tags/list")
        .send()
        .assert_error(401, "UNAUTHORIZED");
    let d = digest_of(b"data");
    s.req("POST", &format!("/v2/x/blobs/uploads/?digest={d}"))
        .arg("-u")
        .arg("alice:s3cret")
        .body(b"data")
        .send()
        .assert_status(201);
}

/// The token flow: a token for `scope` from /token with optional creds.
fn token(s: &Server, creds: Option<&str>, scope: &str) -> (u16, String) {
    let mut r = s.req(
        "GET",
        &format!("/token?service=berth-registry&scope={scope}"),
    );
    if let Some(c) = creds {
        r = r.arg("-u").arg(c);
    }
    let resp = r.send();
    let t = if resp.status == 200 {
        resp.json()["token"].as_str().unwrap().to_string()
    } else {
        String::new()
    };
    (resp.status, t)
}

fn token_config(s: &Server, extra: &str) -> String {
    let file = htpasswd_file(s, &[("alice", "pw-a"), ("bob", "pw-b")]);
    format!(
        "auth:\n  htpasswd: {}\n  token:\n    expiry_secs: {extra}\n    groups:\n      readers: [bob]\n    rules:\n      - repository: \"team/**\"\n        users: [alice]\n        actions: [pull, push, delete]\n      - repository: \"team/**\"\n        groups: [readers]\n        actions: [pull]\n      - repository: \"public/*\"\n        users: [alice]\n        actions: [\"*\"]\n        anonymous: [pull]\n",
        file.display()
    )
}

#[test]
fn token_auth_matrix() {
    if !require_tool("htpasswd") {
        return;
    }
    let pre = Server::start();
    let s = Server::start_with(&token_config(&pre, "300"));
    let bearer = |t: &str| format!("Authorization: Bearer {t}");

    // No credentials: 401 with a Bearer challenge naming realm, service, scope.
    let r = s.req("GET", "/v2/team/app/tags/list").send();
    r.assert_error(401, "UNAUTHORIZED");
    let challenge = r.header("www-authenticate").unwrap().to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"http://"),
        "{challenge}"
    );
    assert!(challenge.contains("/token\""), "{challenge}");
    assert!(
        challenge.contains("service=\"berth-registry\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:team/app:pull\""),
        "{challenge}"
    );

    // Wrong password at the token endpoint: 401.
    assert_eq!(
        token(&s, Some("alice:nope"), "repository:team/app:pull").0,
        401
    );

    // The right token works for push and pull.
    let (st, alice) = token(&s, Some("alice:pw-a"), "repository:team/app:pull,push");
    assert_eq!(st, 200);
    let d = digest_of(b"layer");
    s.req("POST", &format!("/v2/team/app/blobs/uploads/?digest={d}"))
        .header(&bearer(&alice))
        .body(b"layer")
        .send()
        .assert_status(201);
    s.req("GET", &format!("/v2/team/app/blobs/{d}"))
        .header(&bearer(&alice))
        .send()
        .assert_status(200);
    // A valid token for another repository: 401 again (alice could get one) ...
    let (_, other) = token(&s, Some("alice:pw-a"), "repository:team/other:pull");
    let r = s
        .req("GET", &format!("/v2/team/app/blobs/{d}"))
        .header(&bearer(&other))
        .send();
    r.assert_error(401, "UNAUTHORIZED");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    // ... and 403 for a user the rules do not allow: bob may only pull.
    let (st, bob) = token(&s, Some("bob:pw-b"), "repository:team/app:pull,push");
    assert_eq!(st, 200);
    s.req("GET", &format!("/v2/team/app/blobs/{d}"))
        .header(&bearer(&bob))
        .send()
        .assert_status(200);
    s.req("POST", "/v2/team/app/blobs/uploads/")
        .header(&bearer(&bob))
        .send()
        .assert_error(403, "DENIED");
    // Insufficient scope: a pull token used to push.
    let (_, pull_only) = token(&s, Some("alice:pw-a"), "repository:team/app:pull");
    s.req("POST", "/v2/team/app/blobs/uploads/")
        .header(&bearer(&pull_only))
        .send()
        .assert_error(401, "UNAUTHORIZED");
    let (_, alice_del) = token(&s, Some("alice:pw-a"), "repository:team/app:delete");
    s.req("DELETE", &format!("/v2/team/app/blobs/{d}"))
        .header(&bearer(&bob))
        .send()
        .assert_error(403, "DENIED");
    s.req("DELETE", &format!("/v2/team/app/blobs/{d}"))
        .header(&bearer(&alice_del))
        .send()
        .assert_status(202);

    // Forged: the signature of a valid token altered; a token from another server.
    let mut forged = alice.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    s.req("GET", "/v2/team/app/tags/list")
        .header(&bearer(&forged))
        .send()
        .assert_error(401, "UNAUTHORIZED");
    let pre2 = Server::start();
    let other_server = Server::start_with(&token_config(&pre2, "300"));
    let (_, foreign) = token(
        &other_server,
        Some("alice:pw-a"),
        "repository:team/app:pull",
    );
    s.req("GET", "/v2/team/app/tags/list")
        .header(&bearer(&foreign))
        .send()
        .assert_error(401, "UNAUTHORIZED");

    // Anonymous pull where a rule allows it, not push.
    let (st, anon) = token(&s, None, "repository:public/x:pull,push");
    assert_eq!(st, 200);
    let (_, alice_pub) = token(&s, Some("alice:pw-a"), "repository:public/x:pull,push");
    push_blob_with(&s, "public/x", b"pub", &alice_pub);
    let pd = digest_of(b"pub");
    s.req("GET", &format!("/v2/public/x/blobs/{pd}"))
        .header(&bearer(&anon))
        .send()
        .assert_status(200);
    s.req("POST", "/v2/public/x/blobs/uploads/")
        .header(&bearer(&anon))
        .send()
        .assert_error(401, "UNAUTHORIZED");
    let (_, anon_team) = token(&s, None, "repository:team/app:pull");
    s.req("GET", "/v2/team/app/tags/list")
        .header(&bearer(&anon_team))
        .send()
        .assert_error(401, "UNAUTHORIZED");

    // Expired: a server issuing 1-second tokens.
    let pre3 = Server::start();
    let short = Server::start_with(&token_config(&pre3, "1"));
    let (_, t) = token(&short, Some("alice:pw-a"), "repository:team/app:pull");
    let url = "/v2/team/app/tags/list";
    assert!(
        wait_for(Duration::from_secs(10), || {
            short.req("GET", url).header(&bearer(&t)).send().status == 401
        }),
        "a 1 s token must expire"
    );
    let r = short.req("GET", url).header(&bearer(&t)).send();
    r.assert_error(401, "UNAUTHORIZED");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
}

fn push_blob_with(s: &Server, repo: &str, data: &[u8], token: &str) {
    let d = digest_of(data);
    s.req("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"))
        .header(&format!("Authorization: Bearer {token}"))
        .body(data)
        .send()
        .assert_status(201);
}

#[test]
fn skopeo_through_the_token_flow() {
    if !require_tool("htpasswd") || skopeo_tool().is_none() {
        return;
    }
    let pre = Server::start();
    let s = Server::start_with(&token_config(&pre, "300"));
    let fx = fixture();
    let dst = format!("docker://{}/team/busybox:1", s.addr);
    let src = format!("oci-archive:{}:busybox:latest", fx.archive.display());
    // Without credentials the push is refused.
    let mut c = Command::new(find_tool("skopeo").unwrap());
    c.args(["copy", "--dest-tls-verify=false", &src, &dst]);
    assert!(!run(&mut c).status.success());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:pw-a",
        &src,
        &dst,
    ]);
    let inspect = skopeo_json(&["inspect", "--tls-verify=false", "--creds", "bob:pw-b", &dst]);
    assert_eq!(inspect["Digest"], fx.image.manifest_digest.as_str());
    // bob may pull but not push.
    let mut c = Command::new(find_tool("skopeo").unwrap());
    c.args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:pw-b",
        &src,
        &format!("docker://{}/team/bob:1", s.addr),
    ]);
    assert!(!run(&mut c).status.success());
}

/// Blobs under the storage root are whole: each data file hashes to its name.
fn assert_blobs_intact(root: &Path) {
    let blobs = root.join("blobs/sha256");
    let Ok(prefixes) = fs::read_dir(&blobs) else {
        return;
    };
    for p in prefixes {
        for b in fs::read_dir(p.unwrap().path()).unwrap() {
            let b = b.unwrap();
            let name = b.file_name().to_string_lossy().into_owned();
            let data = b.path().join("data");
            if data.exists() {
                assert_eq!(
                    sha256_file(&data),
                    format!("sha256:{name}"),
                    "corrupt blob {name}"
                );
            }
        }
    }
}

#[test]
fn kill_9_during_concurrent_pushes_loses_nothing_completed() {
    let mut s = Server::start();
    let mut completed: Vec<(String, String, Vec<u8>)> = Vec::new(); // repo, digest, data
    let mut in_flight: Vec<(String, String)> = Vec::new();
    for round in 0..3u64 {
        let addr = s.addr.clone();
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut done = Vec::new();
                    let mut attempted = Vec::new();
                    for i in 0..50u64 {
                        let seed = round * 10_000 + w * 100 + i;
                        let data = random_bytes(256 * 1024 + (seed as usize % 7) * 4096, seed);
                        let repo = format!("crash/w{w}");
                        let d = digest_of(&data);
                        attempted.push((repo.clone(), d.clone()));
                        let r = Req::new(
                            "POST",
                            &format!("http://{addr}/v2/{repo}/blobs/uploads/?digest={d}"),
                        )
                        .body(&data)
                        .arg("--max-time")
                        .arg("20")
                        .send_lenient();
                        match r {
                            Some(r) if r.status == 201 => done.push((repo, d, data)),
                            _ => break,
                        }
                    }
                    (done, attempted)
                })
            })
            .collect();
        // Kill once some pushes completed, while the others are mid-way.
        let marker = s.root().join("blobs");
        assert!(wait_for(Duration::from_secs(30), || fs::read_dir(&marker)
            .map(|d| d.count() > 0)
            .unwrap_or(false)));
        std::thread::sleep(Duration::from_millis(150 * (round + 1)));
        s.kill9();
        for w in workers {
            let (done, attempted) = w.join().unwrap();
            completed.extend(done);
            in_flight.extend(attempted);
        }
        s.kill9_and_restart();
        // Every completed push is served bit for bit.
        for (repo, d, data) in &completed {
            let r = s.req("GET", &format!("/v2/{repo}/blobs/{d}")).send();
            assert_eq!(
                r.status, 200,
                "completed blob {d} lost after kill -9 (round {round})"
            );
            assert!(r.body == *data, "blob {d} differs after kill -9");
        }
        // Nothing partial: whatever is served hashes to its digest.
        for (repo, d) in &in_flight {
            let r = s.req("GET", &format!("/v2/{repo}/blobs/{d}")).send();
            if r.status == 200 {
                assert_eq!(digest_of(&r.body), *d, "partial blob served");
            } else {
                assert_eq!(r.status, 404);
            }
        }
        assert_blobs_intact(&s.root());
    }
    assert!(!completed.is_empty());
}

#[test]
fn online_gc_keeps_everything_reachable_while_pushing() {
    let s = Server::start_with("gc:\n  interval_secs: 1\n  grace_period_secs: 3\n");
    // Pushes run while GC runs every second.
    let addr = s.addr.clone();
    let pushers: Vec<_> = (0..3u64)
        .map(|w| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                let start = std::time::Instant::now();
                let mut i = 0u64;
                while start.elapsed() < Duration::from_secs(6) {
                    let seed = 1000 * w + i;
                    let repo = format!("gc/w{w}");
                    let config = format!("{{\"os\":\"linux\",\"n\":{seed}}}");
                    let layer = random_bytes(64 * 1024, seed);
                    let mut digests = Vec::new();
                    for blob in [config.as_bytes(), &layer[..]] {
                        let d = digest_of(blob);
                        Req::new(
                            "POST",
                            &format!("http://{addr}/v2/{repo}/blobs/uploads/?digest={d}"),
                        )
                        .body(blob)
                        .send()
                        .assert_status(201);
                        digests.push(d);
                    }
                    let m = image_manifest(
                        &digests[0],
                        config.len(),
                        &[(&digests[1], layer.len())],
                        None,
                    );
                    Req::new("PUT", &format!("http://{addr}/v2/{repo}/manifests/t{i}"))
                        .header(&format!("Content-Type: {OCI_MANIFEST_TYPE}"))
                        .body(&m)
                        .send()
                        .assert_status(201);
                    pushed.push((repo, format!("t{i}"), digests, layer));
                    i += 1;
                }
                pushed
            })
        })
        .collect();
    // Meanwhile an unreferenced blob that GC must remove once older than 3 s,
    // and an untagged-but-referenced one that must stay.
    let orphan = push_blob(&s, "gc/orphan", &random_bytes(10_000, 999));
    let mut all = Vec::new();
    for p in pushers {
        all.extend(p.join().unwrap());
    }
    assert!(all.len() > 5, "too few pushes: {}", all.len());
    let orphan_path = s
        .root()
        .join("blobs/sha256")
        .join(&orphan[7..9])
        .join(&orphan[7..]);
    assert!(
        wait_for(Duration::from_secs(30), || !orphan_path.exists()),
        "GC did not remove an unreferenced blob older than the grace period"
    );
    // Every tagged image is complete.
    for (repo, tag, digests, layer) in &all {
        s.req("GET", &format!("/v2/{repo}/manifests/{tag}"))
            .send()
            .assert_status(200);
        for d in digests {
            s.req("HEAD", &format!("/v2/{repo}/blobs/{d}"))
                .send()
                .assert_status(200);
        }
        let got = s
            .req("GET", &format!("/v2/{repo}/blobs/{}", digests[1]))
            .send();
        assert!(got.body == *layer);
    }
    let metrics = String::from_utf8(s.req("GET", "/metrics").send().body).unwrap();
    assert!(
        !metrics.contains("berth_registry_gc_runs_total 0\n"),
        "{metrics}"
    );
}

#[test]
fn offline_gc_command_with_dry_run_and_untagged() {
    let s = Server::start_with("gc:\n  grace_period_secs: 0\n");
    let (_, md, cd, ld) = push_image(&s, "app", "keep", 30);
    let (_, md2, _, ld2) = push_image(&s, "app", "drop", 31);
    let orphan = push_blob(&s, "app", b"orphan blob");
    s.req("DELETE", "/v2/app/manifests/drop")
        .send()
        .assert_status(202);
    let root = Root::new();
    let storage = s.root();
    let cfg = root.scratch("gc.yaml");
    fs::write(&cfg, "gc:\n  grace_period_secs: 0\n").unwrap();
    let gc = |extra: &[&str]| {
        let mut args = vec![
            "--root",
            storage.to_str().unwrap(),
            "registry",
            "gc",
            "--config",
            cfg.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut c = Command::new(BERTH);
        c.args(&args);
        stdout(&run_ok(&mut c))
    };
    let blob_exists = |d: &str| {
        storage
            .join("blobs/sha256")
            .join(&d[7..9])
            .join(&d[7..])
            .exists()
    };
    let dry = gc(&["--dry-run"]);
    assert!(dry.starts_with("would delete 1 blobs"), "{dry}");
    assert!(blob_exists(&orphan));
    let real = gc(&[]);
    assert!(real.starts_with("deleted 1 blobs"), "{real}");
    assert!(!blob_exists(&orphan));
    assert!(
        blob_exists(&ld2),
        "an untagged manifest still holds its layer"
    );
    let untagged = gc(&["--delete-untagged"]);
    assert!(untagged.contains("and 1 manifests"), "{untagged}");
    assert!(!blob_exists(&ld2));
    assert!(!blob_exists(&md2));
    for d in [&md, &cd, &ld] {
        assert!(blob_exists(d), "reachable blob {d} deleted");
    }
    s.req("GET", "/v2/app/manifests/keep")
        .send()
        .assert_status(200);
}

#[test]
fn graceful_shutdown_and_rate_limit() {
    let mut s = Server::start_with("limits:\n  rate_limit_per_sec: 1\n  rate_limit_burst: 3\n");
    let statuses: Vec<u16> = (0..6).map(|_| s.req("GET", "/v2/").send().status).collect();
    assert!(statuses[..3].iter().all(|&c| c == 200), "{statuses:?}");
    let limited = s.req("GET", "/v2/").send();
    limited.assert_error(429, "TOOMANYREQUESTS");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(
        s.terminate().success(),
        "SIGTERM must end the server cleanly"
    );
}

#[test]
fn pushing_a_1_gib_blob_keeps_rss_small() {
    let s = Server::start();
    // A 1 GiB stream through a chunked, streamed PATCH.
    let loc = s
        .req("POST", "/v2/big/blobs/uploads/")
        .send()
        .header("location")
        .unwrap()
        .to_string();
    let script = format!(
        "head -c 1073741824 /dev/zero | curl -s -f -X PATCH -H 'Content-Type: application/octet-stream' -T - '{}'",
        s.url(&loc)
    );
    run_ok(Command::new("bash").args(["-c", &script]));
    let zero_digest = "sha256:49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14";
    s.req("PUT", &format!("{loc}?digest={zero_digest}"))
        .send()
        .assert_status(201);
    let h = s
        .req("HEAD", &format!("/v2/big/blobs/{zero_digest}"))
        .send();
    assert_eq!(h.header("content-length"), Some("1073741824"));
    let hwm_kb = s.proc_status_kb("VmHWM");
    eprintln!("server peak RSS while pushing 1 GiB: {} MiB", hwm_kb / 1024);
    assert!(
        hwm_kb < 64 * 1024,
        "peak RSS {hwm_kb} kB is not under 64 MiB"
    );
}

#[test]
fn tls_from_pem_with_optional_client_certificates() {
    if !require_tool("openssl") {
        return;
    }
    let pre = Server::start();
    let dir = pre.scratch("tls");
    fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let mut c = Command::new(find_tool("openssl").unwrap());
        c.current_dir(&dir).args(args);
        run_ok(&mut c);
    };
    // A CA, a server certificate for 127.0.0.1 and a client certificate.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for who in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
    }
    let p = |f: &str| dir.join(f).display().to_string();
    let s = Server::start_with(&format!(
        "tls:\n  cert: {}\n  key: {}\n",
        p("server.pem"),
        p("server.key")
    ));
    let url = format!("https://{}/v2/", s.addr);
    Req::new("GET", &url)
        .arg("--cacert")
        .arg(&p("ca.pem"))
        .send()
        .assert_status(200);
    // Plain HTTP to the TLS port fails.
    assert!(
        Req::new("GET", &format!("http://{}/v2/", s.addr))
            .send_lenient()
            .is_none_or(|r| r.status != 200)
    );

    let m = Server::start_with(&format!(
        "tls:\n  cert: {}\n  key: {}\n  client_ca: {}\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    ));
    let url = format!("https://{}/v2/", m.addr);
    assert!(
        Req::new("GET", &url)
            .arg("--cacert")
            .arg(&p("ca.pem"))
            .send_lenient()
            .is_none(),
        "a client without a certificate must be refused"
    );
    Req::new("GET", &url)
        .arg("--cacert")
        .arg(&p("ca.pem"))
        .arg("--cert")
        .arg(&p("client.pem"))
        .arg("--key")
        .arg(&p("client.key"))
        .send()
        .assert_status(200);
}
