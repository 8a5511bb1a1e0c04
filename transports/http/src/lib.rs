//! HTTP transport for syncline: an axum/hyper server and a hyper-util client, rustls for HTTPS. (work in progress)
