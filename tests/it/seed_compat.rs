//! Compatibility with the Python prototype found by black-box comparison (issue 12):
//! Fireflies event ids, GitHub's legacy signature header, the prototype's file layout.

use crate::helpers::*;

#[tokio::test]
async fn fireflies_ids_and_githubs_sha1_header() {
    let app = App::spawn("http", &[("FIREFLIES_WEBHOOK_SECRET", "ff")]);
    let body = r#"{"meetingId":"m-7","eventType":"Transcription completed"}"#;
    let sig = format!("sha256={}", sign("ff", body));
    let (code, v) = app.post("/webhook", body, &[("x-hub-signature", &sig)]).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["event_id"], "fireflies:m-7:Transcription completed");
    let body = r#"{"meetingId":"m-7","eventType":"x","clientReferenceId":"ref-1"}"#;
    let sig = format!("sha256={}", sign("ff", body));
    let (_, v) = app.post("/webhook", body, &[("x-hub-signature", &sig)]).await;
    assert_eq!(v["event_id"], "fireflies_ref:ref-1");
    // A wrong Fireflies signature is refused...
    let (code, _) = app.post("/webhook", body, &[("x-hub-signature", "sha256=00")]).await;
    assert_eq!(code, 401);
    // ...but GitHub's sha1 header is not a Fireflies signature at all.
    let gh = [("x-hub-signature", "sha1=0123456789abcdef"), ("x-github-event", "ping")];
    let (code, v) = app.post("/webhook/github", r#"{"zen":"z"}"#, &gh).await;
    assert_eq!(code, 200, "{v}");
}
