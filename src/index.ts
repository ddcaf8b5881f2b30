/**
 * effect-task-host: a background task host for Effect applications.
 *
 * @since 0.1.0
 */
export {
  BackgroundTaskEvent,
  type BackgroundTaskEventTag,
  BackgroundTaskRecord,
  CancelPolicy,
  Cancelled,
  CancelRequested,
  ClosePolicy,
  Completed,
  defaultAttempt,
  duration,
  Failed,
  Id,
  isTerminal,
  LiveState,
  matchesEvent,
  matchesRecord,
  Progress,
  Registered,
  RegisterRequest,
  StateChanged,
  TaskAttempt,
  TaskCompletion,
  TaskFilter,
  TaskKind,
  TaskOutcome,
  TaskRegistration,
  TaskScope,
  TaskState,
  TaskUpdate,
  TerminalState,
  Transferred
} from "./BackgroundTask.ts"
export {
  BackgroundTaskHost,
  type BackgroundTaskHostOptions,
  type BackgroundTaskHostService,
  LocalBackgroundTaskHost
} from "./BackgroundTaskHost.ts"
export {
  InvalidTransition,
  InvokeError,
  isPluginError,
  PluginError,
  RegistrationError,
  SessionError,
  SnapshotError,
  TaskAlreadyExists,
  TaskNotFound
} from "./PluginError.ts"
export { TaskContext } from "./TaskContext.ts"
