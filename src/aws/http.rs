//! The HTTP client every AWS call goes through, the credential chain's included: HTTPS may go
//! through the proxy the environment names (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`: a CONNECT
//! tunnel, encrypted end to end, as the SDK's default client does), plaintext never. The SDK's
//! default client also sends `http://` requests to `HTTP_PROXY` / `ALL_PROXY`, loopback
//! included: an emulator at `http://127.0.0.1` (the only plaintext endpoint iamsweep allows)
//! would then hand signed requests, session tokens and the secrets `AssumeRole` returns to a
//! plaintext proxy, possibly off the machine. Plaintext requests go straight to their host.

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

fn tls() -> tls::Provider {
    tls::Provider::Rustls(CryptoMode::AwsLc)
}

/// HTTPS through the environment's proxy settings, as the SDK's default client.
fn proxied() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut b = ConnectorBuilder::default().tls_provider(tls());
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.set_proxy_config(Some(ProxyConfig::from_env()));
        b.build()
    })
}

/// Straight to the host, whatever the environment says.
fn direct() -> SharedHttpClient {
    Builder::new().tls_provider(tls()).build_https()
}

/// The client for every AWS call: HTTPS as the environment's proxy settings say, plaintext
/// always direct.
pub fn client() -> SharedHttpClient {
    SharedHttpClient::new(NoPlaintextProxy {
        direct: direct(),
        proxied: proxied(),
    })
}

#[derive(Clone, Debug)]
struct NoPlaintextProxy {
    direct: SharedHttpClient,
    proxied: SharedHttpClient,
}

impl HttpClient for NoPlaintextProxy {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(ByScheme {
            direct: self.direct.http_connector(settings, components),
            proxied: self.proxied.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct ByScheme {
    direct: SharedHttpConnector,
    proxied: SharedHttpConnector,
}

impl HttpConnector for ByScheme {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if request.uri().starts_with("https://") {
            self.proxied.call(request)
        } else {
            self.direct.call(request)
        }
    }
}
