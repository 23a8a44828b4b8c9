//! sea-orm entities, mirroring the migrations. Rows are converted to domain types in `db::images`;
//! nothing outside `db` sees these.

pub mod images {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "images")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub region_id: String,
        pub organization_id: Option<String>,
        pub visibility: String,
        pub kind: String,
        pub disk_format: String,
        pub architecture: String,
        pub name: String,
        pub description: Option<String>,
        pub os_family: Option<String>,
        pub os_distro: Option<String>,
        pub os_version: Option<String>,
        pub protected: bool,
        pub source: String,
        pub reference: Option<String>,
        pub digest: Option<String>,
        pub imported_by: String,
        pub imported_at: i64,
        pub state: String,
        pub reason: Option<String>,
        pub reason_code: Option<String>,
        pub bytes_done: i64,
        pub bytes_total: Option<i64>,
        pub size_bytes: Option<i64>,
        pub sha256: Option<String>,
        pub expected_sha256: Option<String>,
        pub blob_id: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
        pub revision: i64,
        /// The kernel the image boots with (RESTRICT: a referenced kernel cannot be deleted).
        pub kernel_id: Option<String>,
        /// OCI pulls: the image config's digest and the platform pulled.
        pub config_digest: Option<String>,
        pub platform: Option<String>,
        /// Where a running import is (`resolving` ... `storing`).
        pub phase: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod image_tags {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "image_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub image_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
        pub reserved: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod image_consumers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "image_consumers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub image_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer_id: String,
        pub kind: String,
        pub description: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod import_jobs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "import_jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub spec: String,
        pub secrets_in_memory: bool,
        pub target_kind: String,
        pub target_id: String,
        pub image_id: Option<String>,
        /// Repeats `target_id` for kernel targets (cascading foreign key).
        pub kernel_id: Option<String>,
        pub region_id: String,
        pub attempt: i32,
        pub max_attempts: i32,
        pub lease_owner: Option<String>,
        pub lease_expires_at: i64,
        pub blob_id: Option<String>,
        pub last_error: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod org_usage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "org_usage")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub region_id: String,
        pub images: i64,
        pub bytes: i64,
        pub importing: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod multipart_uploads {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "multipart_uploads")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub upload_id: String,
        pub region_id: String,
        pub image_id: String,
        pub blob_id: String,
        pub started_at: i64,
        /// The object being written (`BlobKey`); `image_id`/`blob_id` name its owner and attempt.
        pub object_key: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod upload_leases {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "upload_leases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub image_id: String,
        pub organization_id: String,
        pub holder: String,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod kernels {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kernels")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub region_id: String,
        pub organization_id: Option<String>,
        pub visibility: String,
        pub architecture: String,
        pub name: String,
        pub description: Option<String>,
        pub version: String,
        pub format: Option<String>,
        pub distro: Option<String>,
        pub protected: bool,
        pub source: String,
        pub reference: Option<String>,
        pub digest: Option<String>,
        pub imported_by: String,
        pub imported_at: i64,
        pub state: String,
        pub reason: Option<String>,
        pub reason_code: Option<String>,
        pub bytes_done: i64,
        pub bytes_total: Option<i64>,
        pub expected_sha256: Option<String>,
        pub size_bytes: i64,
        pub created_at: i64,
        pub updated_at: i64,
        pub revision: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod kernel_tags {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kernel_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kernel_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
        pub reserved: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod kernel_artifacts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kernel_artifacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kernel_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub artifact: String,
        pub blob_id: String,
        pub size_bytes: i64,
        pub sha256: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod kernel_consumers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kernel_consumers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kernel_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer_id: String,
        pub kind: String,
        pub description: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod docker_images {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "docker_images")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub image_id: String,
        pub organization_id: String,
        pub region_id: String,
        pub docker_id: String,
        pub config: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod docker_tags {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "docker_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub region_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub reference: String,
        pub image_id: String,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
