CREATE TABLE "release_deltas" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"release_id" uuid NOT NULL,
	"image" text NOT NULL,
	"source_version" text NOT NULL,
	"source_root_hash" text NOT NULL,
	"source_size_bytes" bigint NOT NULL,
	"target_root_hash" text NOT NULL,
	"digest" text NOT NULL,
	"size_bytes" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "release_deltas" ADD CONSTRAINT "release_deltas_release_id_releases_id_fk" FOREIGN KEY ("release_id") REFERENCES "public"."releases"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "release_deltas" ADD CONSTRAINT "release_deltas_digest_blobs_digest_fk" FOREIGN KEY ("digest") REFERENCES "public"."blobs"("digest") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "release_deltas_release_image_source_uq" ON "release_deltas" USING btree ("release_id","image","source_root_hash");--> statement-breakpoint
CREATE INDEX "release_deltas_digest_idx" ON "release_deltas" USING btree ("digest");