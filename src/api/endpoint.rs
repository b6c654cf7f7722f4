//! Which URL each call goes to. The endpoint is the *API access region*, which
//! is also the unit Tencent counts rate limits in (SPEC §1), so the runner keys
//! its limiters on [`Endpoint::host`].

use url::Url;

/// A product API and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Cdb,
    Kms,
    /// Cloud Access Management: region-free; `doctor` reads the CDB service role.
    Cam,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Cdb => "cdb",
            Service::Kms => "kms",
            Service::Cam => "cam",
        }
    }
    pub fn version(self) -> &'static str {
        match self {
            Service::Cdb => "2017-03-20",
            Service::Kms => "2019-01-18",
            Service::Cam => "2019-01-16",
        }
    }
    pub fn parse(name: &str) -> Option<Service> {
        match name {
            "cdb" => Some(Service::Cdb),
            "kms" => Some(Service::Kms),
            "cam" => Some(Service::Cam),
            _ => None,
        }
    }
}

/// How to build URLs: a fixed base, a `{region}` template, or the regional hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// `https://<service>.intl.tencentcloudapi.com` (the nearest access region).
    Default,
    /// `https://<service>.<region>.tencentcloudapi.com`: each region has its own quota.
    Regional,
    /// `--endpoint URL` for every service; `{region}` in it is replaced per call.
    Custom(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid endpoint URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
}

/// A resolved endpoint: the URL to POST to and the exact `Host` value that is signed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub url: Url,
    pub host: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let invalid = |reason: &str| EndpointError::Invalid {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        let host_name = parsed
            .host_str()
            .ok_or_else(|| invalid("no host"))?
            .to_string();
        // Host as hyper sends it: the authority, with the port only when it is not the default.
        let host = match parsed.port() {
            Some(p) => format!("{host_name}:{p}"),
            None => host_name,
        };
        Ok(Endpoint { url: parsed, host })
    }
}

impl EndpointPolicy {
    /// The endpoint for `service` calls about resources in `region`.
    pub fn resolve(&self, service: Service, region: &str) -> Result<Endpoint, EndpointError> {
        let url = match self {
            EndpointPolicy::Default => {
                format!("https://{}.intl.tencentcloudapi.com/", service.name())
            }
            // CAM has no regional hosts.
            EndpointPolicy::Regional if region.is_empty() || service == Service::Cam => {
                format!("https://{}.intl.tencentcloudapi.com/", service.name())
            }
            EndpointPolicy::Regional => {
                format!("https://{}.{region}.tencentcloudapi.com/", service.name())
            }
            EndpointPolicy::Custom(template) => template.replace("{region}", region),
        };
        Endpoint::parse(&url)
    }

    /// Checks a custom template once, up front, so a typo is a usage error and not N failures.
    pub fn validate(&self) -> Result<(), EndpointError> {
        self.resolve(Service::Cdb, "ap-guangzhou").map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_regional_hosts() {
        let e = EndpointPolicy::Default
            .resolve(Service::Cdb, "ap-shanghai")
            .unwrap();
        assert_eq!(e.host, "cdb.intl.tencentcloudapi.com");
        let e = EndpointPolicy::Default
            .resolve(Service::Kms, "ap-shanghai")
            .unwrap();
        assert_eq!(e.host, "kms.intl.tencentcloudapi.com");
        let e = EndpointPolicy::Regional
            .resolve(Service::Cdb, "ap-shanghai")
            .unwrap();
        assert_eq!(e.host, "cdb.ap-shanghai.tencentcloudapi.com");
        assert_eq!(
            e.url.as_str(),
            "https://cdb.ap-shanghai.tencentcloudapi.com/"
        );
        let e = EndpointPolicy::Regional
            .resolve(Service::Cam, "ap-shanghai")
            .unwrap();
        assert_eq!(e.host, "cam.intl.tencentcloudapi.com", "CAM is region-free");
    }

    #[test]
    fn custom_template_keeps_port_and_substitutes_region() {
        let p = EndpointPolicy::Custom("http://127.0.0.1:9000".into());
        let e = p.resolve(Service::Kms, "ap-tokyo").unwrap();
        assert_eq!(e.host, "127.0.0.1:9000");
        let p = EndpointPolicy::Custom("http://cdb.{region}.test:8080/".into());
        assert_eq!(
            p.resolve(Service::Cdb, "eu-frankfurt").unwrap().host,
            "cdb.eu-frankfurt.test:8080"
        );
        // A default port is not part of the Host header.
        let e = Endpoint::parse("https://cdb.example.com:443/").unwrap();
        assert_eq!(e.host, "cdb.example.com");
        assert!(EndpointPolicy::Custom("ftp://x".into()).validate().is_err());
        assert!(EndpointPolicy::Custom("not a url".into())
            .validate()
            .is_err());
    }
}
