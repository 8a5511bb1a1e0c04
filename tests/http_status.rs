//! The HTTP transport answers refused exchanges with the refusal's status,
//! seen by a plain HTTP/1.1 client over a real socket (what curl, a proxy or
//! a load balancer sees), with the refusal code in a header and the reason
//! in the body.
#![cfg(feature = "http")]

use std::net::SocketAddr;

use syncline::protocol::{self, PROTOCOL_VERSION, Request, RequestBody};
use syncline::transport::http::{HttpServer, HttpServerConfig};
use syncline::{
    CollectionConfig, Permissions, Replica, ReplicaConfig, ReplicaId, Stamp, SyncServer, Tokens,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Posts `body` to `path` and returns the status, the refusal code header
/// and the body.
async fn post(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let authorization = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let code = head
        .lines()
        .find_map(|l| l.strip_prefix("syncline-refusal-code: "))
        .map(str::to_owned);
    (status, code, body.to_owned())
}

fn hello(token: Option<&str>) -> Vec<u8> {
    protocol::encode(&Request {
        version: PROTOCOL_VERSION,
        from: ReplicaId::from_bytes([7; 16]),
        token: token.map(str::to_owned),
        body: RequestBody::Hello {
            clock: Stamp::ZERO,
            collections: vec![],
        },
    })
}

#[tokio::test]
async fn refused_exchanges_get_the_refusals_status() {
    let hub = Replica::in_memory(ReplicaConfig::default()).unwrap();
    hub.define_collection("todos", CollectionConfig::default())
        .unwrap();
    let service = SyncServer::new(hub)
        .with_access(Tokens::new().with_token("secret", "alice", Permissions::all()))
        .into_service();
    let server = HttpServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        service,
        HttpServerConfig::new(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    for (what, body, status) in [
        ("garbage", vec![0xff; 40], 400),
        ("an empty body", vec![], 400),
        (
            "a truncated frame",
            hello(Some("secret"))[..5].to_vec(),
            400,
        ),
        ("no token", hello(None), 401),
        ("a wrong token", hello(Some("wrong")), 401),
    ] {
        let (got, code, reason) = post(addr, "/v1/exchange", None, &body).await;
        assert_eq!(got, status, "{what}: {reason}");
        assert_eq!(code.as_deref(), Some(status.to_string().as_str()), "{what}");
        assert!(!reason.is_empty(), "{what}: the reason is in the body");
    }
    // A good hello is a 200 with a protocol answer, with the token in the
    // request or in the bearer header.
    let (got, code, _) = post(addr, "/v1/exchange", None, &hello(Some("secret"))).await;
    assert_eq!((got, code), (200, None));
    let (got, _, _) = post(addr, "/v1/exchange", Some("secret"), &hello(None)).await;
    assert_eq!(got, 200);
    // Two different tokens are refused, not chosen between.
    let (got, _, reason) = post(addr, "/v1/exchange", Some("other"), &hello(Some("secret"))).await;
    assert_eq!(got, 400, "{reason}");
    assert!(reason.contains("differ"), "{reason}");
    server.shutdown().await;
}
