CREATE TABLE "product_trust_roots" (
	"product" text NOT NULL,
	"version" integer NOT NULL,
	"trust_root" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "product_trust_roots_product_version_pk" PRIMARY KEY("product","version")
);
--> statement-breakpoint
ALTER TABLE "product_trust_roots" ADD CONSTRAINT "product_trust_roots_product_products_id_fk" FOREIGN KEY ("product") REFERENCES "public"."products"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Backfill: each product's current root (its earlier roots were overwritten before this table).
INSERT INTO "product_trust_roots" ("product", "version", "trust_root") SELECT "id", "trust_root_version", "trust_root" FROM "products";
