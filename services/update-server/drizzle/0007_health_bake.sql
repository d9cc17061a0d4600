ALTER TABLE "rollout_devices" ADD COLUMN "committed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "rollout_devices" ADD COLUMN "healthy_seconds" integer;--> statement-breakpoint
CREATE INDEX "devices_product_version_idx" ON "devices" USING btree ("product","current_version");