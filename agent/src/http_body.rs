//! Reading an HTTP body with a ceiling. Every answer the agent reads comes from outside (a Git server's ref
//! listing, the hub's reply), and an answer that never ends must cost a bounded amount of memory, not the box.

use outpost_proto::text::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than the agent's limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// reqwest's own text hides the cause ("error decoding response body"), so the chain is shown.
    #[error("{}", error_chain(.source, ": "))]
    Read { source: reqwest::Error },
}

/// The body of `response`, refused once it passes `limit` bytes: at once when `Content-Length` says so,
/// otherwise as soon as the streamed bytes do. The error says which limit was crossed.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| BodyError::Read { source })?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server on loopback that answers with `head` and then `body_len` bytes of 'x'.
    fn serve(head: String, body_len: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(head.as_bytes());
            let chunk = [b'x'; 8192];
            let mut sent = 0;
            while sent < body_len {
                let n = chunk.len().min(body_len - sent);
                if conn.write_all(&chunk[..n]).is_err() {
                    return;
                }
                sent += n;
            }
        });
        url
    }

    async fn get(url: &str) -> reqwest::Response {
        crate::install_crypto_provider();
        reqwest::Client::new().get(url).send().await.unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let url = serve(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".into(),
            1000,
        );
        assert_eq!(
            read_bounded(get(&url).await, 1000).await.unwrap().len(),
            1000
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let url = serve(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n".into(),
            0,
        );
        let err = read_bounded(get(&url).await, 1000).await.unwrap_err();
        assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_limit() {
        // No length: the server streams until the connection closes, far more than the limit.
        let url = serve(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
            64 * 1024 * 1024,
        );
        let err = read_bounded(get(&url).await, 100_000).await.unwrap_err();
        assert!(err.to_string().contains("limit of 100000 bytes"), "{err}");
    }
}
