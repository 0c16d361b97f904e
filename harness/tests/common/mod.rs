//! What several test files share: an axum app served on a runtime thread of its own.

/// Serves the app `make` builds (called on the server's runtime, so it may build clients there)
/// on 127.0.0.1 at a free port, on a thread of its own; returns its URL.
pub fn serve(make: impl FnOnce() -> axum::Router + Send + 'static) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let app = make();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(format!("http://{}", listener.local_addr().expect("addr")))
                .expect("send url");
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("server url")
}
