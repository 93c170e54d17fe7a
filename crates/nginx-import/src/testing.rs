//! Helpers shared by the unit tests of the translation stages.

use crate::syntax::parse;
use crate::translate::{translate, Translation};

/// Translates `conf`, cited as `nginx.conf`.
pub(crate) fn tr(conf: &str) -> Translation {
    translate(&parse(conf).unwrap(), "nginx.conf")
}

/// Lines of the problems, for asserting where each is reported.
pub(crate) fn lines(t: &Translation) -> Vec<usize> {
    t.problems.iter().map(|p| p.line).collect()
}

/// The translation's routes.yaml, loaded by the real loader.
pub(crate) fn table(t: &Translation) -> switchyard_routes::Table {
    switchyard_routes::load("out.yaml", &t.yaml).unwrap()
}

/// `body` inside `http { server { listen 80; … } }`, starting on line 4.
pub(crate) fn server(body: &str) -> String {
    format!("http {{\n  server {{\n    listen 80;\n{body}\n  }}\n}}\n")
}

/// The operator's nginx.conf, the file the importer was written for.
pub(crate) const OPERATOR: &str = r#"events { worker_connections 1024; }
http {
    upstream app1 { server 192.168.2.50:3000; }
    upstream app2 { server 192.168.2.51:8080; }
    server {
        listen 80;
        server_name _;
        location /app1 {
            proxy_pass http://app1;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /app2 {
            proxy_pass http://app2;
            proxy_set_header Host $host;
        }
        location /health { return 200 "ok"; access_log off; }
    }
}
"#;
