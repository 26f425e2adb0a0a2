//! OpenTelemetry traces from the real binary, received by a small OTLP/HTTP collector this
//! test runs: a span per request and per service call, in one trace, continuing a caller's
//! `traceparent`, with the fields that matter and never a secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::crash::{free_port, start_binary_logging};
use crate::helpers::*;

/// A collector: every `POST /v1/traces` body, parsed.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                assert_eq!(headers.get("content-type").unwrap(), "application/json");
                store.lock().unwrap().push(serde_json::from_str::<Value>(&body).expect("OTLP JSON"));
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Every span received, with the service name of its resource.
fn spans(received: &[Value]) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for body in received {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
                .and_then(|kv| kv["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    all.push((service.clone(), span.clone()));
                }
            }
        }
    }
    all
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].as_array()?.iter().find(|kv| kv["key"] == key).map(|kv| &kv["value"])
}

#[tokio::test]
async fn requests_and_service_calls_are_traced_over_otlp_without_secrets() {
    let app = spawn_app().await;
    let (endpoint, received) = collector().await;
    let port = free_port();
    let text = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"traced-data\"");
    let config = app.dir.path().join("traced.toml");
    std::fs::write(
        &config,
        format!("{text}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"keyfort-under-test\"\nsampling_ratio = 1.0\n"),
    )
    .unwrap();
    // The log at WARN: traces do not depend on the log level.
    let server = start_binary_logging(&config, port, &app.client, None).await;
    let base = format!("https://localhost:{port}");

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let claims = app.request_claims();
    let registered = app
        .client
        .post(format!("{base}{REGISTER}"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .body(claims.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let body: Value = registered.json().await.unwrap();
    let client_id = body["client_id"].as_str().unwrap().to_owned();
    let registration_token = body["registration_access_token"].as_str().unwrap().to_owned();
    let read = app
        .client
        .get(body["registration_client_uri"].as_str().unwrap().replace("https://localhost:9446", &base))
        .bearer_auth(&registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let refused =
        app.client.get(format!("{base}{REGISTER}/{client_id}")).bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(refused.status(), 401);

    // Spans are exported within a second or so.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = spans(&received.lock().unwrap());
        if all.iter().filter(|(_, s)| s["name"] == "request").count() >= 4
            && all.iter().any(|(_, s)| s["name"] == "read")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    assert!(all.iter().all(|(service, _)| service == "keyfort-under-test"), "{all:#?}");

    // The registration: the request span continues the caller's trace, and the service
    // call is its child, in the same trace.
    let request = all
        .iter()
        .map(|(_, s)| s)
        .find(|s| s["name"] == "request" && s["traceId"] == caller_trace)
        .unwrap_or_else(|| panic!("the caller's trace is continued: {all:#?}"));
    assert_eq!(request["parentSpanId"], caller_span);
    assert_eq!(attribute(request, "method").unwrap()["stringValue"], "POST");
    assert_eq!(attribute(request, "route").unwrap()["stringValue"], REGISTER);
    assert_eq!(attribute(request, "status").unwrap()["intValue"], "201");
    assert!(attribute(request, "request.id").is_some(), "{request}");
    let register = all
        .iter()
        .map(|(_, s)| s)
        .find(|s| s["name"] == "register")
        .unwrap_or_else(|| panic!("the service call has a span: {all:#?}"));
    assert_eq!(register["traceId"], caller_trace);
    assert_eq!(register["parentSpanId"], request["spanId"]);
    assert_eq!(attribute(register, "client_id").unwrap()["stringValue"], client_id.as_str());
    assert_eq!(attribute(register, "software_id").unwrap()["stringValue"], SOFTWARE_ID);
    assert_eq!(attribute(register, "org_id").unwrap()["stringValue"], ORG_ID);
    let start: u128 = register["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = register["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start && start > 1_600_000_000_000_000_000, "{register}");

    // A refusal says why on its request span; a request without traceparent starts a trace.
    let refusal = all
        .iter()
        .map(|(_, s)| s)
        .find(|s| s["name"] == "request" && attribute(s, "status").is_some_and(|v| v["intValue"] == "401"))
        .unwrap_or_else(|| panic!("the 401 is traced: {all:#?}"));
    assert_eq!(attribute(refusal, "error").unwrap()["stringValue"], "invalid_token");
    assert_ne!(refusal["traceId"], caller_trace);
    assert_eq!(refusal["parentSpanId"], "");

    let everything = received.lock().unwrap().iter().map(Value::to_string).collect::<String>();
    let ssa = claims["software_statement"].as_str().unwrap();
    for (what, secret) in [
        ("registration access token", registration_token.as_str()),
        ("software statement", ssa),
        ("software statement signature", ssa.rsplit('.').next().unwrap()),
        ("wrong bearer token", "not-the-token"),
    ] {
        assert!(!everything.contains(secret), "a span carries the {what}");
    }
}
