//! [`KubeDouble`]: an in-process stand-in for kube-apiserver v1.32, for tests of code that
//! talks to Kubernetes (the `kube` crate, `kubectl apply --server-side`).
//!
//! It serves real HTTPS (a [`TestCa`] leaf for 127.0.0.1, HTTP/1.1) on a random loopback
//! port from its own thread and tokio runtime, so sync and async tests can both use it, and
//! stops on drop. Behaviour follows the transcripts recorded from a real server
//! (`tests/fixtures/kube-transcripts`): discovery, an object store with managedFields and
//! server-side apply, validation as the real server words it, simulated controllers
//! (namespaces, CRDs, workloads), leases, watch, bearer-token auth.
//!
//! Module map: `router` (HTTP, auth, routing), `handlers` (verbs), `objects` (store, lists),
//! `apply` + `fields` (field ownership), `validate`, `status` (controllers, defaults),
//! `discovery`, `watch`, `errors` (Status bodies).

mod apply;
mod discovery;
mod errors;
mod fields;
mod handlers;
mod objects;
mod router;
mod status;
mod validate;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::server::{bind_loopback, BackgroundServer};
use crate::tls::TestCa;
use objects::{Options, State};

pub use discovery::transcripts_dir;

/// One request as the double saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLog {
    pub method: String,
    /// Path including the query string, as sent.
    pub path: String,
    pub status: u16,
    pub accept: String,
    pub content_type: String,
}

/// An answer from [`KubeDouble::send`]: status, Content-Type and body text.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl RawResponse {
    /// The body as JSON, or as a JSON string when it is not JSON (`404 page not found`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
    }
}

pub(crate) struct Shared {
    pub state: Arc<Mutex<State>>,
    /// `127.0.0.1:port`, echoed in `/api`'s serverAddressByClientCIDRs.
    pub address: String,
}

/// Options for [`KubeDouble::builder`].
#[derive(Clone, Debug)]
pub struct KubeDoubleBuilder {
    workloads_ready: bool,
    crd_delay: Duration,
    controller_delay: Duration,
    namespace_delete_delay: Duration,
}

impl Default for KubeDoubleBuilder {
    fn default() -> Self {
        KubeDoubleBuilder {
            workloads_ready: true,
            crd_delay: Duration::from_millis(100),
            controller_delay: Duration::from_millis(50),
            namespace_delete_delay: Duration::from_millis(200),
        }
    }
}

impl KubeDoubleBuilder {
    /// Whether Deployments/StatefulSets/DaemonSets become ready and Jobs complete (default
    /// true); can be changed later with [`KubeDouble::set_workloads_ready`].
    pub fn workloads_ready(mut self, ready: bool) -> Self {
        self.workloads_ready = ready;
        self
    }
    /// How long a new CRD takes to become Established (default 100 ms).
    pub fn crd_delay(mut self, delay: Duration) -> Self {
        self.crd_delay = delay;
        self
    }
    /// How long the workload controllers take to update status (default 50 ms).
    pub fn controller_delay(mut self, delay: Duration) -> Self {
        self.controller_delay = delay;
        self
    }
    /// How long a deleted namespace stays Terminating (default 200 ms).
    pub fn namespace_delete_delay(mut self, delay: Duration) -> Self {
        self.namespace_delete_delay = delay;
        self
    }
    pub fn start(self) -> KubeDouble {
        let ca = TestCa::new();
        let opts = Options {
            workloads_ready: self.workloads_ready,
            crd_delay: self.crd_delay,
            controller_delay: self.controller_delay,
            namespace_delete_delay: self.namespace_delete_delay,
            root_ca: ca.ca_pem(),
        };
        let token = format!("admin-{}", errors::new_uid().replace('-', ""));
        let discovery = Arc::new(discovery::Discovery::load());
        let state = Arc::new(Mutex::new(State::new(discovery, opts, token)));
        let listener = bind_loopback(0);
        let port = listener.local_addr().expect("local addr").port();
        let tls = ca.server_config(&["127.0.0.1", "localhost"]);
        let mut double = KubeDouble {
            shared: Arc::new(Shared {
                state,
                address: format!("127.0.0.1:{port}"),
            }),
            ca,
            tls,
            port,
            server: None,
        };
        double.serve(listener);
        double
    }
}

/// A running Kubernetes API double; see the module docs.
pub struct KubeDouble {
    shared: Arc<Shared>,
    ca: TestCa,
    tls: Arc<rustls::ServerConfig>,
    port: u16,
    server: Option<BackgroundServer>,
}

impl std::fmt::Debug for KubeDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDouble")
            .field("url", &self.url())
            .finish()
    }
}

impl KubeDouble {
    /// Starts a double with default options.
    pub fn start() -> KubeDouble {
        KubeDoubleBuilder::default().start()
    }

    /// Options: workloads_ready, crd_delay, controller_delay, namespace_delete_delay.
    pub fn builder() -> KubeDoubleBuilder {
        KubeDoubleBuilder::default()
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        let shared = self.shared.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        self.server = Some(BackgroundServer::spawn(
            "kube-double",
            listener,
            move |listener| accept_loop(listener, shared, acceptor),
        ));
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem()
    }

    /// The admin bearer token (also in the kubeconfig).
    pub fn token(&self) -> String {
        self.lock().admin_token.clone()
    }

    /// A new token for `system:serviceaccount:default:restricted`: discovery and `/version`
    /// work, every resource request is 403 Forbidden.
    pub fn restricted_token(&self) -> String {
        let token = format!("restricted-{}", errors::new_uid().replace('-', ""));
        self.lock().tokens.insert(
            token.clone(),
            "system:serviceaccount:default:restricted".into(),
        );
        token
    }

    /// Denies the admin every verb on `resource` (a plural such as `secrets`) until
    /// [`KubeDouble::allow`].
    pub fn forbid(&self, resource: &str) {
        self.lock().forbidden.insert(resource.to_string());
    }

    pub fn allow(&self, resource: &str) {
        self.lock().forbidden.remove(resource);
    }

    /// Writes `dir/kubeconfig` (server URL, embedded CA, admin token, current context) and
    /// returns its path; kubectl and the kube crate both accept it.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: admin\n    namespace: default\ncurrent-context: double\n",
            url = self.url(),
            token = self.token(),
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Every request served so far (oldest first).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().requests.clone()
    }

    pub fn reset_requests(&self) {
        self.lock().requests.clear();
    }

    /// Closes the port (clients get connection refused); the stored objects survive.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    /// Serves again on the same port after [`KubeDouble::stop`].
    pub fn start_again(&mut self) {
        if self.server.is_none() {
            let listener = bind_loopback(self.port);
            self.serve(listener);
        }
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Switches the simulated workload controllers and re-evaluates every workload now.
    pub fn set_workloads_ready(&self, ready: bool) {
        let mut st = self.lock();
        st.opts.workloads_ready = ready;
        status::resync_workloads(&mut st);
    }

    /// The object at an API path (`/api/v1/namespaces/demo/configmaps/x`) as the admin would
    /// GET it, read directly (works while stopped); `None` unless the answer is 200.
    pub fn get(&self, path: &str) -> Option<Value> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut st = self.lock();
        let token = st.admin_token.clone();
        let call = router::Call {
            method: "GET",
            path,
            query,
            accept: "application/json",
            content_type: "",
            token: Some(&token),
            user_agent: "kube-double",
            body: &[],
        };
        match router::dispatch(&mut st, &self.shared.address, &call) {
            router::Outcome::Json(200, v, _) => Some(v),
            _ => None,
        }
    }

    /// Sends a request over HTTPS as the admin; the body is JSON (`None` for none). Returns
    /// the status and the body as JSON (plain text becomes a JSON string).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let r = self.send(
            method,
            path,
            Some(&self.token()),
            "application/json",
            content_type,
            body.map(|b| b.to_string().into_bytes()),
        );
        (r.status, r.json())
    }

    /// Sends any request over HTTPS (blocking, on a helper thread so it also works inside an
    /// async test): `token` `None` sends no Authorization header.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        accept: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> RawResponse {
        let url = format!("{}{path}", self.url());
        let tls = (*self.ca.client_config()).clone();
        let (method, token, accept) = (
            method.to_string(),
            token.map(str::to_string),
            accept.to_string(),
        );
        let content_type = content_type.map(str::to_string);
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .tls_backend_preconfigured(tls)
                .http1_only()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client");
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut rb = client.request(method, url).header("accept", accept);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            if let Some(ct) = content_type {
                rb = rb.header("content-type", ct);
            }
            if let Some(b) = body {
                rb = rb.body(b);
            }
            let resp = rb.send().expect("request to the kube double");
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = resp.text().unwrap_or_default();
            RawResponse {
                status,
                content_type,
                body,
            }
        })
        .join()
        .expect("request thread")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("state lock")
    }
}

impl Drop for KubeDouble {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    // Controllers also need to run when no request arrives (a watch waiting for status).
    let ticker = shared.state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            status::tick(&mut ticker.lock().expect("state lock"));
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| router::serve(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
