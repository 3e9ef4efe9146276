//! Event digests are persisted (merge stamps, delivery records), so the bytes they hash must never
//! change. These vectors were computed with the first implementation of the canonical form and
//! pin it: escapes, unicode, every kind of number, nesting, unsorted, duplicate and untrimmed keys,
//! insignificant whitespace.

use webhook_model::envelope::Envelope;

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
