//! The DetectStackDrift path against recorded CloudFormation responses: no emulator implements
//! drift detection, so the exact call sequence and the mapping of its answers are checked with
//! a replaying HTTP client.

use std::path::Path;

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use landform::engine::cloudformation::aws::classify;
use landform::engine::cloudformation::drift::{Detection, detect};

const ENDPOINT: &str = "https://cloudformation.us-east-1.amazonaws.com/";

fn recorded(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/detect-stack-drift")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The request Landform is expected to send (an AWS Query form) and the answer to it.
fn exchange(form: &str, status: u16, body: String) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder()
            .method("POST")
            .uri(ENDPOINT)
            .body(SdkBody::from(form))
            .unwrap(),
        http::Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(SdkBody::from(body))
            .unwrap(),
    )
}

fn client(replay: &StaticReplayClient, attempts: u32) -> aws_sdk_cloudformation::Client {
    let conf = aws_sdk_cloudformation::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .http_client(replay.clone())
        .build();
    aws_sdk_cloudformation::Client::from_conf(conf)
}

const DETECT: &str = "Action=DetectStackDrift&Version=2010-05-15&StackName=web";
const STATUS: &str = "Action=DescribeStackDriftDetectionStatus&Version=2010-05-15&StackDriftDetectionId=b78ac9b0-dec1-11e8-8d4c-0a1e2f4b1a52";
const DRIFTS: &str = "Action=DescribeStackResourceDrifts&Version=2010-05-15&StackName=web&StackResourceDriftStatusFilters.member.1=MODIFIED&StackResourceDriftStatusFilters.member.2=DELETED";

#[tokio::test]
async fn detection_waits_then_reads_every_page_of_drifts_without_values() {
    let replay = StaticReplayClient::new(vec![
        exchange(DETECT, 200, recorded("detect.xml")),
        exchange(STATUS, 200, recorded("status-in-progress.xml")),
        exchange(STATUS, 200, recorded("status-complete.xml")),
        exchange(DRIFTS, 200, recorded("drifts-page-1.xml")),
        exchange(
            &format!("{DRIFTS}&NextToken=page-2"),
            200,
            recorded("drifts-page-2.xml"),
        ),
    ]);
    let found = detect(&client(&replay, 3), "web").await.unwrap();
    replay.relaxed_requests_match();

    let Detection::Drifts(drifts) = found else {
        panic!("expected drifts, got {found:?}");
    };
    let summary: Vec<(&str, Option<&str>, &str, Vec<String>)> = drifts
        .iter()
        .map(|d| {
            (
                d.address.as_str(),
                d.resource_type.as_deref(),
                d.action.as_str(),
                d.paths.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "Queue",
                Some("AWS::SQS::Queue"),
                "update",
                vec![
                    "Properties.DelaySeconds".to_string(),
                    "Properties.RedrivePolicy.maxReceiveCount".to_string()
                ]
            ),
            ("Param", Some("AWS::SSM::Parameter"), "delete", vec![]),
        ]
    );
    // Expected and actual values may be secrets: none of them reaches the report.
    let json = serde_json::to_string(&drifts).unwrap();
    for value in ["120", "hello", "\"9\"", "\"5\""] {
        assert!(!json.contains(value), "{value} in {json}");
    }
}

#[tokio::test]
async fn an_endpoint_without_drift_detection_is_asked_three_times_not_eight() {
    // What moto answers: an HTML page with status 500 and no AWS error in it. An endpoint
    // without the API gives the same answer every time, so detection tries 3 times, not the
    // client's 8.
    let html = || "<!doctype html><title>500 Internal Server Error</title>".to_string();
    let replay = StaticReplayClient::new(vec![
        exchange(DETECT, 500, html()),
        exchange(DETECT, 500, html()),
        exchange(DETECT, 500, html()),
    ]);
    let found = detect(&client(&replay, 8), "web").await.unwrap();
    replay.relaxed_requests_match();
    assert!(
        matches!(&found, Detection::Unsupported(why) if why.contains("HTTP 500")),
        "{found:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_then_an_error_with_its_reason_not_a_missing_api() {
    let replay = StaticReplayClient::new(vec![
        exchange(DETECT, 400, recorded("throttled.xml")),
        exchange(DETECT, 400, recorded("throttled.xml")),
        exchange(DETECT, 400, recorded("throttled.xml")),
    ]);
    let err = detect(&client(&replay, 8), "web").await.unwrap_err();
    replay.relaxed_requests_match();
    assert_eq!(
        (err.op, err.code.as_deref(), err.status),
        ("DetectStackDrift", Some("Throttling"), Some(400))
    );
    assert_eq!(
        <&str>::from(classify(err.op, "Throttling", err.message).reason()),
        "Throttled"
    );
}
