CREATE TABLE "rollout_frozen_membership" (
	"rollout_id" uuid NOT NULL,
	"device_id" uuid NOT NULL,
	"in_population" boolean NOT NULL,
	"reason" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rollout_frozen_membership_rollout_id_device_id_pk" PRIMARY KEY("rollout_id","device_id")
);
--> statement-breakpoint
ALTER TABLE "products" ADD COLUMN "require_approval" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "created_by" text;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "late_joiners" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "auto_rollback" jsonb;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "approval_required" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "approved_by" text;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "approved_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "start_on_approval" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "rollout_frozen_membership" ADD CONSTRAINT "rollout_frozen_membership_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_frozen_membership" ADD CONSTRAINT "rollout_frozen_membership_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "rollout_frozen_device_idx" ON "rollout_frozen_membership" USING btree ("device_id");--> statement-breakpoint
CREATE UNIQUE INDEX "rollouts_auto_rollback_uq" ON "rollouts" USING btree (("selector"->>'fromRollout')) WHERE "rollouts"."created_by" = 'system:rollout-engine' AND "rollouts"."kind" = 'rollback';