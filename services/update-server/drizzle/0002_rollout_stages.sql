ALTER TABLE "rollouts" ADD COLUMN "state_reason" text;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "kind" text DEFAULT 'normal' NOT NULL;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "maintenance_window" jsonb;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "started_at" timestamp with time zone;