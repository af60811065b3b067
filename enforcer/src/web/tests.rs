//! The router over a real TCP socket, an in-memory data plane and a local store.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::store::LocalStore;
use crate::test_support::memory_registry;

/// One HTTP/1.1 request; returns (status, head, body).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    request_with(addr, method, path, "").await
}

async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

async fn start() -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn crate::store::Store> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let registry = memory_registry(store);
    let learning = Learning::new("node-1".into(), None, None, (100, 100));
    learning.verdicts().count("shop/db", None);
    let state = WebState {
        registry,
        learning,
        metrics: Metrics::default(),
    };
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, state));
    (addr, dir)
}

#[tokio::test]
async fn serves_the_page_the_map_and_metrics_read_only() {
    let (addr, _dir) = start().await;

    let (status, head, body) = request(addr, "GET", "/").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/html"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-security-policy: default-src 'none'")
    );
    assert!(body.contains("<svg"), "the page draws SVG");
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let (status, _, body) = request(addr, "GET", "/api/map").await;
    assert_eq!(status, 200);
    let map: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(map["node"], "node-1");
    assert!(map["zones"].as_array().unwrap().is_empty());

    let (status, head, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("zonewarden_endpoints 0"), "{body}");
    assert!(
        body.contains("zonewarden_connections_total{zone=\"shop/db\",verdict=\"learn\"} 1"),
        "{body}"
    );
    let accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n";
    let (status, head, body) = request_with(addr, "GET", "/metrics", accept).await;
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    for (method, path) in [
        ("POST", "/"),
        ("PUT", "/api/map"),
        ("DELETE", "/metrics"),
        ("POST", "/elsewhere"),
    ] {
        let (status, head, _) = request(addr, method, path).await;
        assert_eq!(status, 405, "{method} {path} must be refused: {head}");
    }
    let (status, _, _) = request(addr, "GET", "/elsewhere").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_taken_address_is_a_clear_error() {
    let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr().unwrap();
    let err = bind(addr).await.unwrap_err().to_string();
    assert!(
        err.contains("--web-listen") && err.contains("--no-web"),
        "{err}"
    );
}
