// What the agent's parts log through (the daemon prints it as JSON lines; tests collect it).
export interface AgentLogEvent {
  level: 'info' | 'warn' | 'error';
  message: string;
  code?: string;
}

export type AgentLog = (e: AgentLogEvent) => void;
