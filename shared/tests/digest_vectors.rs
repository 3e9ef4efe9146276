//! Event digests are persisted (merge stamps, delivery records), so the bytes they hash must never
//! change. These vectors were computed with the first implementation of the canonical form and
//! pin it: escapes, unicode, every kind of number, nesting, unsorted, duplicate and untrimmed keys,
//! insignificant whitespace.

use shared::envelope::Envelope;

const VECTORS: &[(&str, &str)] = &[
    (
        r#"{}"#,
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    ),
    (
        r#"{"b":1,"a":2}"#,
        "d3626ac30a87e6f7a6428233b3c68299976865fa5508e4267c5415c76af7a772",
    ),
    (
        r#"{ "z" : { "y": [ {}, [], null, true, false ] }, "a": "x" }"#,
        "dc7ff23a1893d6cf5c166ba1f04ea941d5829a43f311a081d3b565aeb50a8401",
    ),
    (
        r#"{"s":"quote \" backslash \\ slash \/ tab \t nl \n cr \r bs \b ff \f"}"#,
        "d4a3751ae862a7860797bf2175bfc7d7b4eae974c3453cc90279529e3d672373",
    ),
    (
        r#"{"ctl":"\u0000\u0001\u001f\u007f","uni":"\u00e9\u4e2d é中 😀 \ud83d\ude00","bmp":"\u2028\u2029"}"#,
        "970e5e9f3150c82b0e97ea392f13970eef78481dcfa35375d6976249ea6808c6",
    ),
    (
        r#"{"n":[0,-0,1,-1,9223372036854775807,-9223372036854775808,18446744073709551615]}"#,
        "2b14b9205f83f24e9df0e6b542958209bd24712127aa2f794742552f00a85cac",
    ),
    (
        r#"{"f":[0.0,-0.0,1.5,-1.5,1e2,1E-2,1.0e15,1e16,1e17,123456789.123456789,0.1,1e-7,5e-324,1.7976931348623157e308]}"#,
        "daf382dfa8e0173dd41c8982588599088549f367dab3da610f57feb1063f8f90",
    ),
    (
        r#"{"big":18446744073709551616,"neg":-9223372036854775809}"#,
        "47bd577cf3b606d1c7cc3e6a3b7dfc28520ad01a6f80bcaa625c79a46d7771c6",
    ),
    (
        r#"{"team_id ":"t"," a":{" b ":1},"a":0}"#,
        "26a3a39a5740ef2579afb0d4149d07ab07fa6aabebadcdd75bb492b3b159b645",
    ),
    (
        r#"{"dup":1,"dup":2}"#,
        "65c9cbc507398dd4e40d498eefbe8622b42a923d68561315cd9d56bc2eda02b5",
    ),
    (
        r#"{"k\"ey":1,"k\\ey":2,"k\u0000":3,"é":4,"Z":5,"_":6,"~":7}"#,
        "0f96af031f733e27b40e98b809c8f458aba7a1364b96b105af1a016eebf9aaca",
    ),
    (
        "{\n\t\"ws\" :\r\n [ 1 , 2 ]\n}",
        "6c56b3891c58a11d216d77b226d287f414da90c56983f0fc62e9f6d1d4d1150a",
    ),
];

#[test]
fn digests_of_tricky_bodies_never_change() {
    for (body, digest) in VECTORS {
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        assert_eq!(envelope.digest.as_str(), *digest, "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Any body: the digest equals SHA-256 of the canonical form as it was first written, over
// serde_json::Value. Bodies are rendered with keys in any order, duplicate keys, keys with
// spaces, escapes and insignificant whitespace.

use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn text() -> impl Strategy<Value = String> {
    "[a-z é中😀/\"\\\\\u{0}-\u{1f}\u{7f}]{0,6}"
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["a", "a ", " a", "b", "mid", "k\"", "é"]).prop_map(str::to_owned),
        text(),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Int),
        any::<u64>().prop_map(Json::UInt),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::Float),
        text().prop_map(Json::Text),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

fn render(json: &Json, spaced: bool, out: &mut String) {
    let gap = if spaced { " \n\t" } else { "" };
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(&b.to_string()),
        Json::Int(n) => out.push_str(&n.to_string()),
        Json::UInt(n) => out.push_str(&n.to_string()),
        Json::Float(f) => out.push_str(&serde_json::to_string(f).unwrap()),
        Json::Text(s) => out.push_str(&serde_json::to_string(s).unwrap()),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gap);
                render(item, spaced, out);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, child)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gap);
                out.push_str(&serde_json::to_string(key).unwrap());
                out.push_str(gap);
                out.push(':');
                render(child, spaced, out);
            }
            out.push_str(gap);
            out.push('}');
        }
    }
}

/// The canonical form as it was first written.
fn reference_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, child)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                reference_canonical(child, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_canonical(child, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

proptest! {
    #[test]
    fn any_body_has_the_digest_of_the_first_canonical_form(
        entries in prop::collection::vec((key(), json()), 0..8),
        spaced in any::<bool>(),
    ) {
        let mut body = String::new();
        render(&Json::Object(entries), spaced, &mut body);
        let mut canonical = String::new();
        reference_canonical(&serde_json::from_str(&body).unwrap(), &mut canonical);
        let expected = hex::encode(Sha256::digest(canonical.as_bytes()));
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        prop_assert_eq!(envelope.digest.as_str(), expected, "{}", body);
    }
}
