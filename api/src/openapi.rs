//! The OpenAPI document. Paths are collected from the registered routes by utoipa-actix-web, so a
//! route cannot exist without being documented; `openapi/openapi.json` is a committed snapshot.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::error::ErrorBody;

pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata image service",
        description = "Multi-tenant image service: organization- and region-scoped images (v1) and a \
                       flat per-region query (v2). Every call needs a bearer JWT.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/", description = "The Strata server that serves this document")),
    modifiers(&BearerAuth),
    components(
        schemas(ErrorBody, strata_domain::kernel::KernelArtifact),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Internal, HeadersTooLarge)
    ),
    tags(
        (name = "images", description = "v1: images of one organization in one region"),
        (name = "image-files", description = "v1: image content"),
        (name = "consumers", description = "v1: who uses an image; in-use images cannot be deleted"),
        (name = "kernels", description = "v1: kernels of one organization in one region, their consumers and the kernel catalog"),
        (name = "kernel-files", description = "v1: kernel files (vmlinux, initrd, modules)"),
        (name = "query", description = "v2: flat image query for consoles and automation"),
        (name = "defaults", description = "v1, platform admins: the operator's default global kernels and images"),
        (name = "health", description = "liveness and readiness")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "JWT with `sub`, `org_ids`, `scope` (images:read images:write kernels:read \
                         kernels:write) and optional `platform_admin`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Raw bytes (`application/octet-stream`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// The request is malformed: `invalid-input` (or `reserved-tag` for writes to `strata.dev/` tags).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct BadRequest(ErrorBody);

/// `unauthorized`: the bearer token is missing, malformed, expired or not signed by a trusted key.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// `forbidden`: the token lacks the scope, or does not act for the organization in the path.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// `not-found`: no such region for this organization, or no such resource visible to it.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// `internal`: an unexpected failure; the body carries only the request id.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Internal(ErrorBody);

/// `headers-too-large`: the request's headers are over `[limits] max_header_bytes` or
/// `max_header_fields`. Past the HTTP server's own hard limits (96 fields, 128 KiB) it answers the same 431.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct HeadersTooLarge(ErrorBody);

/// The full document: the static parts above plus every registered route.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    add_links(&mut api);
    close_tagged_variants(&mut api);
    every_operation_may_answer_431(&mut api);
    api
}

/// The header-limit middleware runs before routing, so every operation can answer 431.
fn every_operation_may_answer_431(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Ref, RefOr};
    for item in api.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
            &mut item.head,
        ];
        for op in ops.into_iter().flatten() {
            op.responses
                .responses
                .insert("431".to_owned(), RefOr::Ref(Ref::from_response_name("HeadersTooLarge")));
        }
    }
}

/// serde's `deny_unknown_fields` on an internally tagged enum (`SourceSpec`) does not reach the
/// variants' schemas that utoipa writes; say `additionalProperties: false` on each, as the server
/// refuses unknown fields there.
fn close_tagged_variants(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = api.components.as_mut() else {
        return;
    };
    for name in ["SourceSpec", "KernelSourceSpec"] {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
            for item in &mut one_of.items {
                if let RefOr::T(Schema::Object(o)) = item {
                    o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// OpenAPI links from `createImage` to the operations on the image it created, so generated
/// clients and stateful test tools can follow them.
fn add_links(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    const FOLLOWERS: [(&str, &str); 7] = [
        ("GetImage", "getImage"),
        ("PatchImage", "patchImage"),
        ("DeleteImage", "deleteImage"),
        ("UploadImageFile", "uploadImageFile"),
        ("DownloadImageFile", "downloadImageFile"),
        ("HeadImageFile", "headImageFile"),
        ("ListImageConsumers", "listImageConsumers"),
    ];
    let path = format!("{}/images", crate::routes::V1_PREFIX);
    let Some(op) = api.paths.paths.get_mut(&path).and_then(|item| item.post.as_mut()) else {
        return;
    };
    let Some(RefOr::T(created)) = op.responses.responses.get_mut("201") else {
        return;
    };
    for (name, operation_id) in FOLLOWERS {
        let link = LinkBuilder::new()
            .operation_id(operation_id)
            .parameter("organizationID", "$request.path.organizationID")
            .parameter("regionID", "$request.path.regionID")
            .parameter("imageID", "$response.body#/id")
            .description(format!("`{operation_id}` on the image just created"))
            .build();
        created.links.insert(name.to_owned(), RefOr::T(link));
    }
}

pub fn to_json(api: &utoipa::openapi::OpenApi) -> String {
    let mut s = api
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
