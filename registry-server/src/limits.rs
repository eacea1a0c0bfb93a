//! Per-client request rate (token bucket per IP address, `governor`) and the
//! number of uploads served at once. Both answer 429 `TOOMANYREQUESTS` with a
//! `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{HeaderValue, header};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;
use crate::error::{ApiError, ApiResult, ErrorCode};

pub struct Limits {
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    uploads: Option<Arc<Semaphore>>,
}

fn too_many(retry_after_secs: u64, message: &str) -> ApiError {
    ApiError::new(ErrorCode::TooManyRequests, message).with_header(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs.max(1)),
    )
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Limits {
        let rate = NonZeroU32::new(config.rate_limit_per_sec).map(|per_sec| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(per_sec);
            RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst))
        });
        let uploads = (config.max_concurrent_uploads > 0)
            .then(|| Arc::new(Semaphore::new(config.max_concurrent_uploads)));
        Limits { rate, uploads }
    }

    pub fn check_rate(&self, client: IpAddr) -> ApiResult<()> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            too_many(
                wait.as_secs_f64().ceil() as u64,
                "request rate limit exceeded",
            )
        })
    }

    /// Forgets clients whose bucket is full again (bounds memory).
    pub fn prune(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }

    /// A slot for one upload request, released when dropped.
    pub fn upload_permit(&self) -> ApiResult<Option<OwnedSemaphorePermit>> {
        match &self.uploads {
            None => Ok(None),
            Some(sem) => sem
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| too_many(1, "too many concurrent uploads")),
        }
    }
}
