import { abotaTestConfig } from '../../vitest.shared.ts';

export default abotaTestConfig;
